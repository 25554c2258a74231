"""The fine-tune job queue: Huey (https://huey.readthedocs.io), on an embedded SQLite file by default or on Redis
(SEGDEMO_QUEUE). `broker` opens it, `channel` is one job's keys in its storage (inputs, events, files, stop,
heartbeats), `local` is the embedded default's worker process. What a job is and runs: `segdemo.finetune.worker`."""
