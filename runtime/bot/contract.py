"""Names the Bot stack passes to the bot: environment variables, S3 keys and paths on the instance (no imports)."""

from __future__ import annotations

# Environment variables the systemd unit sets (values are names and ARNs only, never the token).
ENV_TOKEN_SECRET_ARN = "GENART_TOKEN_SECRET_ARN"  # noqa: S105 - a variable name, not a credential
ENV_MODELS_BUCKET = "GENART_MODELS_BUCKET"
ENV_MODEL_KEY = "GENART_MODEL_KEY"
ENV_MODEL_CACHE = "GENART_MODEL_CACHE"
ENV_LOG_LEVEL = "GENART_LOG_LEVEL"
ENV_OPERATOR_IDS = "GENART_OPERATOR_IDS"
# Further settings the bot reads (runtime/bot/config.py); the stack may set them later.
ENV_MODEL_PATH = "GENART_MODEL_PATH"
ENV_TOKEN = "DISCORD_TOKEN"  # noqa: S105 - a variable name, not a credential (local runs only)
ENV_TOKEN_FILE = "DISCORD_TOKEN_FILE"  # noqa: S105 - a variable name, not a credential
ENV_IMDS_URL = "GENART_IMDS_URL"
ENV_IMAGE_FORMAT = "GENART_IMAGE_FORMAT"
ENV_COOLDOWN_S = "GENART_COOLDOWN_S"
ENV_WORKERS = "GENART_WORKERS"
ENV_THREADS = "GENART_THREADS"
ENV_CPU_ARENA = "GENART_CPU_ARENA"
ENV_PREFIX_COMMANDS = "GENART_PREFIX_COMMANDS"
ENV_SYNC_COMMANDS = "GENART_SYNC_COMMANDS"
ENV_ON_REBALANCE = "GENART_ON_REBALANCE"
# Micro-batching knobs: the same names as the endpoint's (runtime/endpoint/contract.py).
ENV_MAX_BATCH = "GENART_MAX_BATCH"
ENV_BATCH_WINDOW_MS = "GENART_BATCH_WINDOW_MS"
ENV_MAX_QUEUE = "GENART_MAX_QUEUE"
# Fair sharing (runtime/bot/limits.py): images a user may save up, images a user may have pending, longest wait.
ENV_USER_BURST = "GENART_USER_BURST"
ENV_USER_MAX_PENDING = "GENART_USER_MAX_PENDING"
ENV_MAX_WAIT_S = "GENART_MAX_WAIT_S"
# Seconds between checks of the model object for a newly published version (0 turns the watch off).
ENV_MODEL_POLL_S = "GENART_MODEL_POLL_S"

# Shutdown budget: a Spot interruption notice comes SPOT_NOTICE_S before the instance stops. The bot notices it
# within SPOT_POLL_S, drains everything (queued and running generations, encoding, replies) until one deadline
# DRAIN_DEADLINE_S later, then needs CLOSE_MARGIN_S to say goodbye and close the gateway. systemd's
# TimeoutStopSec (STOP_TIMEOUT_S) covers the same drain after SIGTERM and stays inside the notice.
SPOT_NOTICE_S = 120
SPOT_POLL_S = 5
DRAIN_DEADLINE_S = 70
CLOSE_MARGIN_S = 10
STOP_TIMEOUT_S = 90
# Memory of the unit, as shares of the instance's RAM (systemd percentages): MemoryHigh starts reclaiming and
# throttling, MemoryMax is the hard limit (the kernel kills the bot, never the CloudWatch or SSM agent).
MEMORY_HIGH = "70%"
MEMORY_MAX = "80%"
# glibc malloc arenas for the unit: onnxruntime's threads otherwise each keep their own freed memory (measured:
# peak RSS 1004 -> 896 MiB serving 8 requests plus a reload at 512 px, docs/benchmarks.md).
MALLOC_ARENA_MAX = 2

# The generator the pipeline publishes and the bot serves (runtime/pipeline/stylegan2/contract.py writes it).
DEFAULT_MODEL_KEY = "stylegan/latest.onnx"
# Where the bot keeps its copy of the model on the instance (systemd CacheDirectory=genart).
MODEL_CACHE_PATH = "/var/cache/genart/model.onnx"
# The bot starts without a model and picks one up by itself: one HeadObject every MODEL_POLL_S (each wait
# jittered by MODEL_POLL_JITTER either way), doubling after errors up to MODEL_POLL_MAX_BACKOFF_S.
MODEL_POLL_S = 60
MODEL_POLL_JITTER = 0.1
MODEL_POLL_MAX_BACKOFF_S = 900

# The code asset: the runtime/ folder filtered to the bot's packages (CDK glob excludes, later patterns win),
# unpacked into APP_DIR so that `python -m runtime.bot` runs with runtime/common beside it.
CODE_ASSET_DIR = "runtime"
CODE_ASSET_EXCLUDE = ("*", "!__init__.py", "!bot", "!bot/**", "!common", "!common/**", "**/__pycache__", "**/*.pyc")
ENTRY_MODULE = "runtime.bot"
REQUIREMENTS_FILE = "runtime/bot/requirements.txt"

# The bot logs this message every HEARTBEAT_INTERVAL_S while it is connected to Discord, with or without a model
# (waiting for the first one is healthy); the Bot stack counts the lines with a metric filter and alarms on the
# ops-alerts topic when they stop.
HEARTBEAT_MESSAGE = "heartbeat"
HEARTBEAT_INTERVAL_S = 60
