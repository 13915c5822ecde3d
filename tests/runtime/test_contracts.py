"""The names one runtime writes and another reads agree (contract modules are the single source)."""

from __future__ import annotations

import re
from pathlib import Path

from runtime.bot import contract as bot
from runtime.endpoint import contract as endpoint
from runtime.lambdas.notify import contract as notify
from runtime.pipeline.stylegan2 import contract as pipeline

ROOT = Path(__file__).resolve().parents[2]


def test_bot_serves_the_key_the_pipeline_publishes() -> None:
    assert bot.DEFAULT_MODEL_KEY == pipeline.PUBLISHED_MODEL_KEY


def test_notify_presigns_the_grid_the_export_step_writes() -> None:
    assert notify.SAMPLE_GRID_FILE == pipeline.SAMPLE_GRID_FILE
    assert pipeline.SAMPLE_GRID_KEY_PATTERN.endswith(f"/{notify.SAMPLE_GRID_FILE}")


def test_the_pipeline_function_publishes_and_validates_with_the_pipelines_names() -> None:
    from runtime.pipeline.stylegan2.config import CFG_NAMES

    assert notify.PUBLISHED_MODEL_KEY == pipeline.PUBLISHED_MODEL_KEY == bot.DEFAULT_MODEL_KEY
    assert notify.EXPORTED_MODEL_FILE == pipeline.EXPORTED_MODEL_FILE
    assert pipeline.EXPORTED_MODEL_KEY_PATTERN.endswith(f"/{notify.EXPORTED_MODEL_FILE}")
    assert f"{pipeline.RUNS_PREFIX}/" == notify.RUNS_PREFIX
    assert f"{pipeline.FEATURE_EXTRACTOR_PREFIX}/" == notify.FEATURE_EXTRACTOR_PREFIX
    assert pipeline.FEATURE_EXTRACTOR_KEY.startswith(notify.FEATURE_EXTRACTOR_PREFIX)
    assert set(notify.MODEL_PRESETS) == set(CFG_NAMES)
    assert (notify.CFG_BATCH, notify.CFG_GAMMA, notify.CFG_LEARNING_RATE, notify.AUTO_BATCH_GPU) == (
        pipeline.CFG_BATCH,
        pipeline.CFG_GAMMA,
        pipeline.CFG_LEARNING_RATE,
        pipeline.AUTO_BATCH_GPU,
    )
    # Checkpoints sit outside the runs prefix (their own lifecycle) and the published key outside both.
    assert not pipeline.CHECKPOINTS_PREFIX.startswith(pipeline.RUNS_PREFIX)
    assert not pipeline.PUBLISHED_MODEL_KEY.startswith((pipeline.RUNS_PREFIX, pipeline.CHECKPOINTS_PREFIX))


def test_endpoint_image_uses_the_contract_compile_cache_dir() -> None:
    dockerfile = (ROOT / "runtime" / "endpoint" / "Dockerfile").read_text()
    declared = re.findall(rf"{endpoint.ENV_COMPILE_CACHE_DIR}=(\S+)", dockerfile)
    assert declared == [endpoint.COMPILE_CACHE_DIR]
    assert f"mkdir -p /opt/ml/model {endpoint.COMPILE_CACHE_DIR}" in dockerfile


def test_contract_modules_import_nothing_but_future() -> None:
    for module in (bot, endpoint, notify, pipeline):
        source = Path(str(module.__file__)).read_text()
        imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        assert imports == ["from __future__ import annotations"], module.__name__


def test_both_micro_batchers_read_the_same_knobs_from_the_same_variables() -> None:
    from runtime.bot.config import build_parser, settings_from
    from runtime.endpoint.settings import Settings

    names = ("ENV_MAX_BATCH", "ENV_BATCH_WINDOW_MS", "ENV_MAX_QUEUE")
    assert [getattr(bot, name) for name in names] == [getattr(endpoint, name) for name in names]
    env = {bot.ENV_MAX_BATCH: "4", bot.ENV_BATCH_WINDOW_MS: "40", bot.ENV_MAX_QUEUE: "64"}
    bot_settings = settings_from(env, build_parser().parse_args([]))
    endpoint_settings = Settings.from_env(env)
    for settings in (bot_settings, endpoint_settings):
        assert (settings.max_batch, settings.batch_window_ms, settings.max_queue) == (4, 40, 64)


def test_images_and_assets_are_built_from_the_runtime_folder() -> None:
    from runtime.pipeline.stylegan2 import contract as pipeline_image

    for module in (endpoint, pipeline_image):
        context = ROOT / module.IMAGE_BUILD_CONTEXT
        assert (context / module.IMAGE_DOCKERFILE).is_file()
        assert (context / "common" / "jsonlog.py").is_file()
    assert bot.CODE_ASSET_DIR == notify.CODE_ASSET_DIR == "runtime"
    assert notify.HANDLER.startswith("runtime.lambdas.notify.")


def test_every_runtime_reads_its_log_level_from_the_same_variable() -> None:
    assert bot.ENV_LOG_LEVEL == endpoint.ENV_LOG_LEVEL == notify.ENV_LOG_LEVEL == "GENART_LOG_LEVEL"


def test_infra_imports_only_the_contract_modules_of_runtimes() -> None:
    offenders = []
    for path in sorted((ROOT / "infra").rglob("*.py")):
        for line in path.read_text().splitlines():
            imported = re.match(r"\s*(?:from|import) (runtime\.[\w.]+)", line)
            if imported and not imported.group(1).endswith("contract") and "import contract" not in line:
                offenders.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert offenders == []


def test_runtime_errors_share_one_base() -> None:
    from runtime.common.errors import GenArtError, InputError
    from runtime.endpoint.client import EndpointCallError
    from runtime.endpoint.upload_model import UploadError
    from runtime.pipeline.stylegan2.dataset_tool import DatasetError
    from runtime.pipeline.stylegan2.export_onnx import OnnxMismatchError

    assert issubclass(DatasetError, InputError) and issubclass(UploadError, InputError)
    assert issubclass(OnnxMismatchError, GenArtError) and issubclass(EndpointCallError, GenArtError)
