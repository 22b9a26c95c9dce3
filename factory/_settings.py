"""Every factory default in one place (the CLI, the Makefile and build() read these)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "exported_models"
DEFAULT_DATA = REPO_ROOT / "data" / "online_retail" / "online_retail.parquet"

DEFAULT_LATENCY_BUDGET_US = 50.0
DEFAULT_SIZE_BUDGET_KB = 256.0
DEFAULT_TIME_BUDGET_S = 60.0
DEFAULT_SEED = 0
DEFAULT_METRIC = "macro_f1"
METRICS = ("accuracy", "macro_f1", "roc_auc", "log_loss")
DEFAULT_LEARNERS = ("lgbm", "xgboost", "rf", "extra_tree", "lrl1")
# FLAML learners whose models the export converts to ONNX (factory._onnx_export).
SUPPORTED_LEARNERS = ("lgbm", "xgboost", "xgb_limitdepth", "rf", "extra_tree", "lrl1", "lrl2")
LABEL_SOURCES = ("given", "clusters", "few")
NUMERIC_IMPUTERS = ("median", "knn")
CLUSTER_METHODS = ("kmeans", "gmm")
# Where the log becomes features and where the search's trials run: pandas and FLAML in this
# process, or PySpark DataFrames and FLAML's trials on Spark (the 'spark' extra).
ENGINES = ("pandas", "spark")
DEFAULT_SPARK_MASTER = "local[2]"

# Held-out fractions: FLAML tunes on train and scores on validation; test is never seen by the
# search and feeds the reported metrics and the parity gate.
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.2

# Token for a missing string value, in training, in the graph and at the edge (docs/ARTIFACT.md).
MISSING_TOKEN = "__missing__"
MAX_CATEGORIES = 1000  # a string column with more distinct values is almost surely an id
MAX_STRING_LENGTH = 256

# Latency measurement of one candidate graph: single row, one thread, no spinning.
LATENCY_WARMUP_RUNS = 50
LATENCY_RUNS = 400
ARTIFACT_LATENCY_RUNS = 1000  # per round
ARTIFACT_LATENCY_ROUNDS = 5  # the artifact's p99 is the median round's p99

# Parity gate (docs/DESIGN.md §2): labels must agree on 100 % (hard floor 99.9 %), probabilities 1e-4.
PARITY_MIN_LABEL_AGREEMENT = 0.999
PARITY_PROB_TOLERANCE = 1e-4
PARITY_SYNTHETIC_ROWS = 200

GOLDEN_SAMPLES = 8
REFERENCE_BINS = 10
ONNX_OPSET = 15  # onnxmltools' LightGBM/XGBoost converters cap the main opset at 15
ONNX_ML_OPSET = 3

# The rerank stage (factory/_rerank.py): on tables up to this many train + validation rows, the
# search's best candidates are ordered by k-fold cross-validation instead of one holdout.
RERANK_MAX_ROWS = 20_000
RERANK_CANDIDATES = 20  # the search's best distinct candidates re-scored (plus the baselines)
RERANK_TIME_SHARE = 0.25  # at most this share of the search's time budget ...
RERANK_MIN_TIME_S = 1.0  # ... but never less than this
