"""DAWN's independent models: the victim's architectures trained on its task data without any
query. DAWN must not claim them; its false claims are counted on them (``dawn`` declares
``needs = ("independent",)``, so the defense stage trains them per defended victim)."""

from __future__ import annotations

from .registry import ModelJob, register_model


@register_model("independent")
def build_independent_models(job: ModelJob, path) -> dict[str, float]:
    """One model per defended surrogate architecture and ``defenses.dawn.independent_seeds``,
    saved together in one file."""
    from .. import io
    from ..models.training import TrainConfig
    from ..models.victims import train_on_splits
    from ..runtime import derive_seed

    cfg = TrainConfig.from_dict(job.params.victim["training"])
    models, seconds = {}, {}
    for arch in job.params.independent_archs:
        for s in job.params.dawn["independent_seeds"]:
            seed = derive_seed(job.seed, "independent", job.victim, arch, s)
            model, fit = train_on_splits(job.victim_data, arch, cfg, seed, job.device)
            models[f"{arch}/s{s}"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            seconds[f"independent {arch}/s{s}"] = fit.seconds
            if job.log:
                job.log.info("independent %s seed %d: val accuracy %.4f", arch, s, fit.best_val_acc)
    num_classes = len(job.victim_data.classes)
    io.save_state_dict({"kind": "independent", "num_classes": num_classes, "models": models}, path)
    return seconds
