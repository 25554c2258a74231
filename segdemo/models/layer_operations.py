"""What a layer that holds code (a Lambda, a TensorFlow call, a weightless custom layer) may be swapped for, and
the one message that refuses a model with such layers and says how to swap them: `--replace-layer NAME=OP` on
the command line (segdemo/card/lambdas.py does the swap), 'Replace layers' in the app. It lives with the model
files because loading one (models/files.check_model_config) is the first place that refuses."""

OPERATIONS = {  # the vocabulary of --replace-layer: name -> (arguments, what it does)
    "identity": ("", "passes its input through"),
    "scale": ("MUL[:ADD]", "x * MUL + ADD (e.g. scale:0.00392156862745098 for x / 255)"),
    "resize": ("H:W[:bilinear|nearest]", "resizes to H x W"),
    "channels": ("START[:STOP]", "keeps channels START..STOP-1 (e.g. channels:0:1 for the first)"),
    "softmax": ("", "softmax over the channels"),
    "sigmoid": ("", "sigmoid"),
}
OPERATIONS_HELP = ", ".join(f"{name}{':' + arguments if arguments else ''}"
                            for name, (arguments, _) in OPERATIONS.items())


def code_layers_refusal(model, found, replacements, in_app=False):
    """Why `model` is not served and how to swap its layers that hold code for built-in ones. `found` says what
    holds code ("contains a Lambda layer (layer 'x')"); `replacements` are the swaps to state, NAME=OP each (the
    suggested operation, or OP); `in_app`: said in the app's 'Replace layers', else with `--replace-layer`."""
    if in_app:
        how = f"write {', '.join(replacements)} in 'Replace layers' (OP: {OPERATIONS_HELP})"
    else:
        how = (f"swap {'it' if len(replacements) == 1 else 'each'} for built-in layers with python -m segdemo.card "
               f"{model} " + " ".join(f"--replace-layer {item}" for item in replacements)
               + f" (OP: {OPERATIONS_HELP}; python -m segdemo.card {model} alone lists what the file says of each "
               "such layer, with a suggestion; --check DIR scores the candidates for a first-layer one)")
    return f"{model} {found}: segdemo runs no code from a model file; {how}"
