"""Registration of the GAN baselines (plain Python, no TensorFlow): LAPGAN and DCGAN.

`model.family = lapgan`: a Laplacian pyramid of GANs (Denton, Chintala, Szlam, Fergus 2015).
Levels at `model.base_size`, twice that, ... up to `data.image_size` (8 -> 16 -> 32 px). The
coarsest level is a GAN from noise (a vector of `model.noise_dim`); every finer level k is a
conditional GAN whose generator takes the nearest-upsampled coarser image plus a noise plane and
outputs the Laplacian residual at s_k, and whose discriminator sees the residual together with
the upsampled coarse image. Levels are trained independently, each on the real pyramid of the
batch (as in the paper); sampling reconstructs the image from the coarsest generated level up.
`model.family = dcgan`: the single-level special case, one GAN at `data.image_size`.

`model.conditional = true`: both networks of every level also get the class as a one-hot
vector (a one-hot map for the convolutional inputs), with `model.num_classes` classes
(`model.class_conditioning = concat`, the paper's). `projection`: the discriminators add the
inner product of a learned class embedding with their features to the logit (Miyato & Koyama
2018) instead. `acgan`: only the generators get the label; every discriminator gets a second
head that classifies its input, trained with TF-GAN's AC-GAN losses (Odena et al. 2017). The
export's `sample` then takes `labels: int32 [N]`, each one of the trained classes
(`data.classes`, or 0 .. num_classes - 1 when that is empty).

Losses (`model.gan_loss`): `minimax`, `non_saturating` (the generator maximises log D(G(z)); the
papers' practice) or `wasserstein_gp` (Wasserstein loss plus `model.gp_weight` times the
gradient penalty), all TF-GAN's (`trainers.gan_losses`). `model.norm = spectral` wraps every
discriminator convolution in spectral normalisation (Miyato et al. 2018); `none` leaves it out.
The generators use batch norm. The model lives in `trainers.families.lapgan`, imported on
`build`.

Fields read: `model.base_size` (lapgan), `model.width`, `model.norm` (none | spectral),
`model.gan_loss`, `model.conditional`, `model.num_classes`, `model.noise_dim`,
`model.gp_weight`, `model.class_conditioning`, `model.coarse_updates` (lapgan), `data.classes`,
`train.seed`; `train.ema_decay` must be 0 and `train.mixed_precision` off or auto (taken as off); the `sampler.`
section is not read (no Langevin chains).
"""

from __future__ import annotations

from trainers.config_values import ConfigError
from trainers.families import Family, register, require_metadata, require_plain_precision

LAPGAN, DCGAN = "lapgan", "dcgan"
GAN_LOSSES = ("minimax", "non_saturating", "wasserstein_gp")
NORMS = ("none", "spectral")
CLASS_CONDITIONINGS = ("concat", "projection", "acgan")  # lapgan_net.CONDITIONINGS, without TF
METADATA_KEYS = ("grids", "image_size", "channels")
BASE_CHANNELS = 64  # generator / discriminator channels at model.width = 1.0


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def level_sizes(base_size: int, image_size: int) -> tuple[int, ...]:
    """LAPGAN's level sizes base_size, 2 * base_size, ..., image_size (at least two levels).

    Raises:
      ConfigError: image_size is not base_size times 2, 4, 8, ...
    """
    _require(isinstance(base_size, int) and base_size >= 2,
             f"model.base_size={base_size!r} must be an integer >= 2")
    sizes = [base_size]
    while sizes[-1] < image_size:
        sizes.append(sizes[-1] * 2)
    _require(sizes[-1] == image_size and len(sizes) >= 2,
             f"data.image_size={image_size} must be model.base_size={base_size} times 2, 4, 8, ... "
             f"(the levels double from the base size), e.g. {base_size * 2} or {base_size * 4}")
    return tuple(sizes)


def sizes_of(config, image_size: int | None = None) -> tuple[int, ...]:
    """The level sizes of the config's family (DCGAN: only the image size)."""
    size = int(image_size or config.data.image_size)
    if config.model.family == DCGAN:
        return (size,)
    return level_sizes(config.model.base_size, size)


def trained_classes(config) -> tuple[int, ...]:
    """The labels a conditional model is trained on and accepts: data.classes, else all."""
    return tuple(config.data.classes) or tuple(range(config.model.num_classes))


def validate(config) -> None:
    """Check the fields the GAN families read; ConfigError names the first bad one."""
    m, t = config.model, config.train
    sizes_of(config)
    _require(m.gan_loss in GAN_LOSSES,
             f"model.gan_loss={m.gan_loss!r} is not allowed; allowed values: {list(GAN_LOSSES)}")
    _require(m.norm in NORMS, f"model.norm={m.norm!r} is not allowed for model.family={m.family}; "
             f"allowed values: {list(NORMS)} (spectral applies to the discriminator)")
    _require(m.width > 0, f"model.width={m.width} must be > 0")
    _require(m.noise_dim >= 1, f"model.noise_dim={m.noise_dim} must be >= 1")
    _require(m.gp_weight >= 0, f"model.gp_weight={m.gp_weight} must be >= 0")
    _require(isinstance(m.coarse_updates, int) and m.coarse_updates >= 1,
             f"model.coarse_updates={m.coarse_updates!r} must be an integer >= 1")
    _require(m.coarse_updates == 1 or m.family == LAPGAN,
             f"model.coarse_updates={m.coarse_updates} needs model.family=lapgan (DCGAN has one level); "
             "set it to 1")
    _require(m.num_classes >= 1, f"model.num_classes={m.num_classes} must be >= 1")
    _require(m.class_conditioning in CLASS_CONDITIONINGS,
             f"model.class_conditioning={m.class_conditioning!r} is not allowed; allowed values: "
             f"{list(CLASS_CONDITIONINGS)}")
    if m.conditional:
        _require(all(c < m.num_classes for c in config.data.classes),
                 f"data.classes={list(config.data.classes)} must each be < model.num_classes="
                 f"{m.num_classes} (a conditional model one-hot encodes the label values)")
    require_plain_precision(t, m.family)


def build(config, metadata: dict):
    """The uncompiled `LapGAN` (one level for DCGAN) from the config and the pyramid metadata.

    Raises:
      ValueError: metadata lacks a key.
    """
    require_metadata(metadata, METADATA_KEYS)
    from trainers.families import lapgan  # TensorFlow from here on

    m = config.model
    return lapgan.build_model(
        sizes_of(config, int(metadata["image_size"])), int(metadata["channels"]),
        width=max(1, int(round(BASE_CHANNELS * m.width))), noise_dim=m.noise_dim,
        gan_loss=m.gan_loss, gp_weight=m.gp_weight, spectral=m.norm == "spectral",
        num_classes=m.num_classes if m.conditional else 0,
        classes=trained_classes(config) if m.conditional else (),
        class_conditioning=m.class_conditioning, coarse_updates=m.coarse_updates, seed=config.train.seed)


register(Family(name=LAPGAN, signatures=("sample", "sample_from_coarse"), build=build, validate=validate,
                description="LAPGAN (Denton et al. 2015): a Laplacian pyramid of (class-)conditional "
                            "GANs, each level generating the residual of the upsampled coarser image"))
register(Family(name=DCGAN, signatures=("sample",), build=build, validate=validate,
                description="DCGAN: one (class-conditional) GAN at the image size, LAPGAN's "
                            "single-level special case"))
