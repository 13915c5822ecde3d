"""Named model sources the Diffusion stack can seed its weights from (`diffusion.model_source` in cdk.json).

Each source is a public diffusers-format repository at a pinned revision, listed file by file with the sha256 and
size each file must have: the deploy-time seed (infra/components/model_seed.py) refuses any byte that differs,
so a moved tag or a tampered mirror fails the deploy instead of reaching the endpoint.

Stable Diffusion 1.5 (CreativeML OpenRAIL-M licence: read it before use). runwayml/stable-diffusion-v1-5 was
taken down in 2024; `stable-diffusion-v1-5/stable-diffusion-v1-5` is its mirror on the Hugging Face Hub.
- Revision 451f4fe16113bff5a5d2269ed5ad43b0592e9a14: the commit of that repository that independent public code
  pins and finds in its Hub cache (found by searching public code; not checked against the Hub from here, which
  this project's sessions cannot reach). If the Hub no longer serves it, every download fails with HTTP 404
  naming the file: pick a current commit of the same repository and check the sha256 values still match.
- sha256 and size: the large files' from their Git LFS pointers, the small files' computed from their exact
  bytes, both read from a Git mirror of the runwayml repository's history (GitHub HDRJ-One/runwayml-stable-
  diffusion-v1-5, last runwayml commit 1d0c4ebf6ff58a5caecab40fa1406526bca4b5b9). The sizes of the fp16 UNet,
  VAE and text encoder agree with what public code pins for the new repository at the revision above.
- What the server loads (runtime/endpoint/pipeline_setup.py): `StableDiffusionPipeline.from_pretrained` on the
  folder, offline, with no `variant`, cast to fp16 on the GPU, and the safety checker unless
  GENART_SAFETY_CHECKER=0. So the fp16 weight files of the repository are stored under the plain names
  diffusers looks for (`unet/diffusion_pytorch_model.fp16.safetensors` -> `unet/diffusion_pytorch_model
  .safetensors`), plus the safety checker and its feature extractor config: about 2.74 GB in all.
- model_index.json is last: the seed writes it only when everything else is verified, so its presence (what
  `make doctor` and the endpoint look for) means a complete folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.lambdas.model_seed.contract import SeedFile


@dataclass(frozen=True)
class ModelSource:
    """A pinned repository and the files to copy from it, in order (the marker file last)."""

    name: str
    repository: str
    revision: str
    licence: str
    files: tuple[SeedFile, ...]
    marker: str = "model_index.json"

    @property
    def total_bytes(self) -> int:
        """What the seed downloads and stores."""
        return sum(f.size for f in self.files)

    def describe(self) -> str:
        """One line for stack outputs and docs."""
        return f"{self.repository}@{self.revision} ({len(self.files)} files, {self.total_bytes / 1e9:.2f} GB)"


HF_RESOLVE = "https://huggingface.co/{repository}/resolve/{revision}/{path}"

SD15_REPOSITORY = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_REVISION = "451f4fe16113bff5a5d2269ed5ad43b0592e9a14"

# (path in the repository, key below diffusion/<model_name>/, sha256, size in bytes)
_SD15_FP16 = (
    (
        "feature_extractor/preprocessor_config.json",
        "feature_extractor/preprocessor_config.json",
        "2a1da83b5e1032aaeef397552ddb408dca0d8cd1dc58f61bf6abf38d6f33a0a2",
        342,
    ),
    (
        "safety_checker/config.json",
        "safety_checker/config.json",
        "5dd77a06cbd9b155060bd58deb81ffd1aafc1c6d7970acac674c1128bd4edfe2",
        4723,
    ),
    (
        "safety_checker/model.fp16.safetensors",
        "safety_checker/model.safetensors",
        "08902f19b1cfebd7c989f152fc0507bef6898c706a91d666509383122324b511",
        608018440,
    ),
    (
        "scheduler/scheduler_config.json",
        "scheduler/scheduler_config.json",
        "699cce92eb7c122e2eb7dfdea78e6187fda76a5ed4a8e42319b85610e620e091",
        308,
    ),
    (
        "text_encoder/config.json",
        "text_encoder/config.json",
        "845df614cb9327ae7bbea027316246fae917827407da6df13572e41b5f93b4cc",
        617,
    ),
    (
        "text_encoder/model.fp16.safetensors",
        "text_encoder/model.safetensors",
        "77795e2023adcf39bc29a884661950380bd093cf0750a966d473d1718dc9ef4e",
        246144864,
    ),
    (
        "tokenizer/merges.txt",
        "tokenizer/merges.txt",
        "9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a",
        524619,
    ),
    (
        "tokenizer/special_tokens_map.json",
        "tokenizer/special_tokens_map.json",
        "c4864a9376a8401918425bed71fc14fc0e81f9b59ec45c1cf96cccb2df508eac",
        472,
    ),
    (
        "tokenizer/tokenizer_config.json",
        "tokenizer/tokenizer_config.json",
        "00439066fcba73de57644cf41e4e3b9f2dbb09d7f3fc2005898ba52399045882",
        806,
    ),
    (
        "tokenizer/vocab.json",
        "tokenizer/vocab.json",
        "e089ad92ba36837a0d31433e555c8f45fe601ab5c221d4f607ded32d9f7a4349",
        1059962,
    ),
    (
        "unet/config.json",
        "unet/config.json",
        "78f474de6bab3d893868f37be97b636ae65c0df3073ed3256ca458ff599b5f96",
        743,
    ),
    (
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "c83908253f9a64d08c25fc90874c9c8aef9a329ce1ca5fb909d73b0c83d1ea21",
        1719125304,
    ),
    (
        "vae/config.json",
        "vae/config.json",
        "786a7d21647ddea6a04b9675c03d3cb45e90a2f3c6da5fbda2c54ade040036de",
        547,
    ),
    (
        "vae/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "4fbcf0ebe55a0984f5a5e00d8c4521d52359af7229bb4d81890039d2aa16dd7c",
        167335342,
    ),
    (
        "model_index.json",
        "model_index.json",
        "e2f6f22e274374010aec30c79eb2d6e53fff4a36ac0225523a92cb2d41a83347",
        541,
    ),
)


def _hugging_face(repository: str, revision: str, rows: tuple[tuple[str, str, str, int], ...]) -> tuple[SeedFile, ...]:
    return tuple(
        SeedFile(
            url=HF_RESOLVE.format(repository=repository, revision=revision, path=path),
            key=key,
            sha256=sha256,
            size=size,
        )
        for path, key, sha256, size in rows
    )


SOURCES: dict[str, ModelSource] = {
    source.name: source
    for source in (
        ModelSource(
            name="sd15-fp16",
            repository=SD15_REPOSITORY,
            revision=SD15_REVISION,
            licence="CreativeML OpenRAIL-M",
            files=_hugging_face(SD15_REPOSITORY, SD15_REVISION, _SD15_FP16),
        ),
    )
}
DEFAULT_SOURCE = "sd15-fp16"


def model_source(name: str) -> ModelSource:
    """The source of that name (KeyError lists the known ones)."""
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown model source {name!r}; known: {sorted(SOURCES)}") from None
