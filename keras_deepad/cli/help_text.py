"""What `keras-deepad --help` and each subcommand's `--help` print besides the arguments."""

DESCRIPTION = """\
Deep anomaly detection with Keras 3.

Typical use:
  keras-deepad train --model ae --data breast_cancer --output saved_models/ae.keras
  keras-deepad score --model-file saved_models/ae.keras --data new_data.csv
  keras-deepad export --model-file saved_models/ae.keras --base-dir saved_models
  keras-deepad group --model vae --data inputs.csv --references 20 --top 10
  keras-deepad export --model-file saved_models/ae.keras --format tflite --quantization int8 \
      --representative-data breast_cancer
  keras-deepad demo

DATA is a built-in data set (see `keras-deepad datasets`; `digits:3` picks
normal class 3) or a file: .csv (numeric columns; --label-column names a 0/1
column that is kept out of the features and used only for evaluation),
.npy (features) or .npz (arrays `x` and optionally `y`).
Scores: higher = more anomalous. Labels: 1 = anomaly.
Exit status: 0 done; 2 a usage or data error (one line on stderr naming the
problem; add --debug for the traceback); 1 an internal error; 130 interrupted.
"""

#: Examples shown by each subcommand's --help.
EXAMPLES = {
    "train": [
        "--model ae --data breast_cancer --epochs 50 --output saved_models/ae.keras",
        "--model vae --data my.csv --label-column is_fraud --fpr 0.01 --param latent_dim=4",
        "--model deep-svdd --data digits:3 --knee-stopping --score-method latent",
    ],
    "score": [
        "--model-file saved_models/ae.keras --data new.csv --output scores.csv",
        "--model-file saved_models/ae.keras --data new.npy --method max --json",
    ],
    "evaluate": [
        "--model-file saved_models/ae.keras --data breast_cancer",
        "--model-file saved_models/vae.keras --data my.csv --label-column y --plot plots/",
    ],
    "compare": [
        "--data breast_cancer",
        "--data my.csv --label-column y --models ae,vae,iforest,lof --epochs 30 --plot plots/",
    ],
    "group": ["--model vae --data inputs.csv --references 20 --top 10"],
    "export": [
        "--model-file saved_models/ae.keras --base-dir saved_models",
        "--model-file saved_models/ae.keras --format tflite --quantization int8 "
        "--representative-data breast_cancer",
    ],
    "demo": ["", "--model vae --data digits"],
    "beam-score": [
        "--model-dir saved_models/ae --input 'rows/part-*.csv' --output scores/ae",
    ],
}
