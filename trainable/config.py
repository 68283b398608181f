"""Training configuration: dataclasses loaded from YAML plus ``key=value`` overrides.

A config file has sections ``model`` (the typed config of the model, ``models.CONFIGS[name]``),
``data`` (:class:`DataConfig`), ``train`` (:class:`TrainConfig`) and a top-level ``name`` (registered
model name). A paper config is a short delta over one base file: ``base: base/vitb_dlrsd.yaml`` (path
relative to the config's folder) is read first, its sections updated key by key by the delta; a base file
cannot itself name a base (one level, no chains). Overrides are dotted paths, e.g.
``train.lr=1e-4 data.train_classes=[ship,harbor]``; values are parsed as YAML scalars/lists. Every key is
checked against its dataclass (unknown keys — e.g. ``model.qgff`` on CAT-Seg — and wrong types are errors
naming the key).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from dglrsis.errors import DglrsisError

from .models import ModelConfig, model_config
from .models.config import check_fields


@dataclass
class DataConfig:
    kind: str = "world"  # world | ovrsis | isaid (source format)
    root: str | None = None  # dataset root (None for the in-memory world)
    split: str = "train"  # training split folder
    val_split: str = "val"  # evaluation split folder
    classes: str | None = None  # class file / vocabulary name (ovrsis); None → iSAID classes
    background: str = "ignore"  # ignore (background → 255) | class (background is class 0)
    train_classes: list | None = None  # open-vocabulary seen classes; others → 255 in training labels
    world_seed: int = 0  # synthetic-world seed (training scenes)
    world_n: int = 64  # number of training scenes
    world_size: int = 128  # world scene side in pixels
    val_n: int = 8  # held-out evaluation scenes (world) / images (limit) for periodic eval
    scale: tuple = (0.5, 2.0)  # random rescale range of the short side relative to input size
    hflip: bool = True  # random horizontal flip
    vflip: bool = False  # random vertical flip (remote sensing)
    rot90: bool = False  # random 90° rotations (remote sensing)
    num_workers: int = 0  # dataloader workers


@dataclass
class TrainConfig:
    iterations: int = 30000  # optimisation steps (paper: 30k)
    batch_size: int = 8  # total batch per step across processes and accumulation
    grad_accum: int = 1  # gradient accumulation steps
    lr: float = 2e-4  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    clip_lr_mult: float = 0.01  # lr multiplier of the CLIP parameter group
    warmup: int = 0  # linear warm-up steps before the cosine decay
    grad_clip: float = 0.01  # max grad norm (0 = off); CAT-Seg uses full-model clip 0.01
    mixed_precision: str = "no"  # no | fp16 | bf16 (accelerate launch flags take precedence)
    seed: int = 0  # global seed (accelerate.utils.set_seed)
    log_every: int = 1  # CSV log interval in steps
    save_every: int = 1000  # save_state interval in steps
    eval_every: int = 0  # periodic evaluation interval (0 = only at the end)
    keep_checkpoints: int = 3  # number of step_XXXXX folders kept
    ignore_as_negative: bool = (
        True  # ignored pixels as all-negative BCE targets (public CAT-Seg); False → skipped
    )


@dataclass
class Config:
    name: str = "catseg"  # registered model name (trainable.models.MODELS)
    model: ModelConfig = field(default_factory=ModelConfig)  # model hyper-parameters
    data: DataConfig = field(default_factory=DataConfig)  # data source and augmentation
    train: TrainConfig = field(default_factory=TrainConfig)  # optimisation schedule

    def to_dict(self) -> dict:
        return asdict(self)


def parse_value(text: str):
    """YAML-parse one override value: ``3`` → int, ``1e-4`` → float, ``[a,b]`` → list, ``null`` → None."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):  # YAML 1.1 does not read 1e-4 as a float
        try:
            return float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            return value
    return value


SECTIONS = ("model", "data", "train")


def build_config(data: dict | None = None, overrides: list[str] | None = None) -> Config:
    """Config from a nested dict (YAML content) then dotted ``key=value`` overrides (type-checked)."""
    data = dict(data or {})
    name = str(data.pop("name", Config.name))
    sections = {sec: dict(data.pop(sec, None) or {}) for sec in SECTIONS}
    if data:
        raise DglrsisError(f"unknown config sections: {', '.join(sorted(data))}")
    for sec, values in sections.items():
        if not isinstance(values, dict):
            raise DglrsisError(f"config section {sec!r} must be a mapping")
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise DglrsisError(f"override {item!r} is not key=value")
        if key == "name":
            name = text
            continue
        sec, _, sub = key.partition(".")
        if sec not in SECTIONS or not sub:
            raise DglrsisError(f"override key {key!r} must be name or model.X / data.X / train.X")
        sections[sec][sub] = parse_value(text)
    return Config(
        name=name,
        model=model_config(name, sections["model"]),
        data=DataConfig(**check_fields(DataConfig, sections["data"], "data")),
        train=TrainConfig(**check_fields(TrainConfig, sections["train"], "train")),
    )


def read_yaml(path: Path) -> dict:
    """The mapping in YAML file ``path`` (one-line DglrsisError when unreadable, invalid or not a mapping)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise DglrsisError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise DglrsisError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DglrsisError(f"config {path} must be a mapping")
    return data


def merge_base(base: dict, delta: dict) -> dict:
    """``base`` updated by ``delta``: top-level keys replaced, sections updated key by key."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in delta.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k].update(v)
        else:
            out[k] = v
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file (its ``base`` first, if it names one) and apply overrides."""
    data = {}
    if path is not None:
        path = Path(path)
        data = read_yaml(path)
        if "base" in data:
            base_path = path.parent / str(data.pop("base"))
            base = read_yaml(base_path)
            if "base" in base:
                raise DglrsisError(f"base config {base_path} names a base itself (one level only)")
            data = merge_base(base, data)
    return build_config(data, overrides)


def config_from_dict(d: dict) -> Config:
    """Inverse of :meth:`Config.to_dict` (used when loading a run's saved config)."""
    return build_config(d)
