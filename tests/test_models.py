"""The model registry (architectures, backbones, checkpoints), and the agreement of every
registry in the package with the config schema (generated from the strategies' and defenses'
declarations) and the config package: a name a config may use must exist, and a registered
one must be usable from a config."""

import inspect

import pytest
import torch

from stealbench import config
from stealbench.attack.api import GRANULARITY_PATTERN
from stealbench.attack.strategies import STRATEGIES, discover
from stealbench.attack.strategies import registry as strategies
from stealbench.data import sizes
from stealbench.data.builders import BUILDERS
from stealbench.defense import (
    DEFENSE_MODELS,
    DEFENSES,
    Defense,
    DefenseContext,
    create,
    defense_parameters,
)
from stealbench.models import architectures as models

SMALL = [a for a in models.ARCHITECTURES if a not in models.TORCHVISION_MODELS]


@pytest.fixture(scope="module")
def schema():
    return config.load_schema()


# ---------------------------------------------------------- registries and the schema


def test_architectures_agree_with_the_schema(schema):
    assert set(schema["definitions"]["arch"]["enum"]) == set(models.ARCHITECTURES)
    assert set(config.PRETRAINED_ARCHS) == set(models.TORCHVISION_MODELS)


def _attack_schema(schema):
    return schema["properties"]["attacks"]["additionalProperties"]


def _strategy_options(schema) -> dict[str, set]:
    """Each strategy's options as the (generated) schema lists them."""
    out = {}
    for branch in _attack_schema(schema)["allOf"]:
        name = branch["if"]["properties"]["strategy"]["const"]
        out[name] = set(branch["then"]["properties"]["options"]["properties"])
    return out


def test_what_the_strategy_files_declare_is_what_they_register(schema):
    """declared() reads the decorators from the source (planning loads no torch): it must
    agree with the strategies the imports register, and the schema is generated from it."""
    discover()
    declared = strategies.declared()
    assert set(declared) == set(STRATEGIES)
    for name, spec in STRATEGIES.items():
        assert declared[name].kind == spec.kind and declared[name].options == spec.options, name
        assert declared[name].module == spec.module and declared[name].doc == spec.doc, name
    assert set(_attack_schema(schema)["properties"]["strategy"]["enum"]) == set(declared)


def test_strategy_options_in_the_schema_are_the_strategys_parameters(schema):
    discover()
    for name, spec in STRATEGIES.items():
        assert _strategy_options(schema)[name] == set(spec.parameters), name


def test_a_strategy_that_does_not_declare_an_option_is_an_error():
    def fn(pool, budget, rng, width=3):
        return None

    with pytest.raises(TypeError, match=r"declares options \[\] but fn takes \['width'\]"):
        strategies.register("undeclared", kind="sampling")(fn)
    assert "undeclared" not in STRATEGIES
    with pytest.raises(ValueError, match="kind 'adaptive' is not one of sampling, sequential"):
        strategies.register("odd", kind="adaptive")


def test_the_schema_file_holds_no_copy_of_the_methods():
    """The method sections exist only as generated: the file itself names no strategy enum,
    no options branch and no defense entry, so it cannot disagree with the methods."""
    import yaml

    raw = yaml.safe_load(config.SCHEMA_PATH.read_text())
    attack = _attack_schema(raw)
    assert "enum" not in attack["properties"]["strategy"] and "allOf" not in attack
    assert "properties" not in _defense_schema(raw)


def _defense_schema(schema) -> dict:
    defended = schema["properties"]["defenses"]["properties"]["defended"]
    return defended["properties"]["defenses"]


def test_defenses_agree_with_the_schema(schema):
    entries = _defense_schema(schema)["properties"]
    assert set(entries) == set(DEFENSES)
    assert set(_defense_schema(schema)["default"]) <= set(DEFENSES)


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_each_defenses_schema_entry_lists_its_parameters_and_strength(schema, name):
    entry = _defense_schema(schema)["properties"][name]
    assert entry.get("additionalProperties") is False
    params = entry.get("properties", {})
    assert set(params) == set(defense_parameters(name)) == set(DEFENSES[name].params)
    signature = inspect.signature(DEFENSES[name].__init__).parameters
    assert set(defense_parameters(name)) == set(signature) - {"self", "context"}
    strength = DEFENSES[name].strength
    assert config.defense_strength(name) == strength
    # the strength (and only the strength) may be a sweep: a list of values
    for param, sub in params.items():
        is_sweep = any(branch.get("type") == "array" for branch in sub.get("oneOf", []))
        assert is_sweep == (param == strength), (name, param)


def test_a_defense_that_does_not_declare_a_parameter_is_an_error():
    from stealbench.defense.registry import register

    class Undeclared(Defense):
        name = "undeclared"

        def __init__(self, context, width: int = 3):
            super().__init__(context)

        def perturb(self, probs, images):
            return probs

    with pytest.raises(TypeError, match=r"params declares \[\] but __init__ takes \['width'\]"):
        register(Undeclared)
    assert "undeclared" not in DEFENSES


def test_a_model_a_defense_declares_is_trained_and_loaded_without_other_code(monkeypatch):
    """A defense needing a new kind of model: the model's builder and loader registered
    beside it are all the workflow and build_context use."""
    from stealbench.defense import registry
    from stealbench.defense.context import build_context

    monkeypatch.setattr(registry, "DEFENSE_MODELS", dict(registry.DEFENSE_MODELS))
    monkeypatch.setattr(registry, "MODEL_LOADERS", dict(registry.MODEL_LOADERS))
    monkeypatch.setattr("stealbench.defense.context.MODEL_LOADERS", registry.MODEL_LOADERS)
    registry.register_model("oracle", load=lambda path, device: f"oracle from {path}")(
        lambda job, path: {}
    )
    monkeypatch.setattr(DEFENSES["rounding"], "needs", ("oracle",))
    assert config.defense_models(["rounding"], api_only=True) == ["oracle"]
    meta = {"arch": "lenet", "num_classes": 10, "input_size": None}
    context = build_context(["rounding"], 0, "v", meta, model_paths={"oracle": "o.pt"})
    assert context.model("oracle") == "oracle from o.pt"
    with pytest.raises(ValueError, match="needs oracle in its context"):
        create("rounding", DefenseContext())


def test_a_need_that_nothing_builds_is_an_error(monkeypatch):
    from stealbench.defense.registry import needed

    monkeypatch.setattr(DEFENSES["rounding"], "needs", ("oracle",))
    with pytest.raises(ValueError, match=r"need \['oracle'\]: neither a DefenseContext field"):
        needed(["rounding"])


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_the_models_a_defense_needs_are_the_ones_the_defense_stage_provides(name):
    """A defense's needs are DefenseContext fields or models the defense stage trains per
    victim (DEFENSE_MODELS); a context field that is not trained (MAD's proxy) is built from
    the victim's metadata by build_context."""
    from stealbench.defense.context import build_context

    needs = set(DEFENSES[name].needs)
    assert needs <= set(DefenseContext.__dataclass_fields__) | set(DEFENSE_MODELS)
    assert all(DEFENSE_MODELS[m] for m in needs & set(DEFENSE_MODELS) - {"detector"})
    trained = set(config.defense_models([name]))
    assert trained == needs & set(DEFENSE_MODELS)
    built = needs & set(DefenseContext.__dataclass_fields__) - trained
    if built:
        meta = {"arch": "lenet", "num_classes": 10, "input_size": None}
        context = build_context([name], 0, "v", meta)
        assert all(getattr(context, need) is not None for need in built)
        create(name, context)  # builds without a model the defense stage did not train


def test_dataset_sources_agree_with_the_builders(schema):
    source = schema["properties"]["datasets"]["additionalProperties"]["properties"]["source"]
    assert set(source["enum"]) == set(BUILDERS) | {"torchvision", "imagefolder"}
    assert set(sizes.REAL_SOURCES) == {"torchvision", "imagefolder"}
    assert set(sizes.DEFAULT_SIZES) == set(BUILDERS)
    for name, build in BUILDERS.items():
        size = inspect.signature(build).parameters.get("size")
        if size is not None:
            assert size.default == sizes.DEFAULT_SIZES[name], name


def test_granularities_agree_with_the_api(schema):
    assert schema["definitions"]["granularities"]["items"]["pattern"] == GRANULARITY_PATTERN


# --------------------------------------------------------------------- architectures


@pytest.mark.parametrize("arch", sorted(SMALL))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28), (3, 32, 32), (1, 64, 48)])
def test_small_architectures_take_any_image_shape(arch, shape):
    torch.manual_seed(0)
    model = models.create_model(arch, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.rand(2, *shape))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", models.TORCHVISION_MODELS)
def test_torchvision_models_by_name_without_weights(arch):
    # weights=None: nothing is downloaded; a smaller input keeps the test fast
    model = models.create_model(arch, num_classes=5, input_size=64).eval()
    assert model.adapter.channels == 3
    with torch.no_grad():
        out = model(torch.rand(2, 1, 28, 28))  # greyscale digits are adapted to RGB
    assert out.shape == (2, 5)


def test_pretrained_weights_load_through_torchvision_weights_api(tmp_path, monkeypatch):
    """The real weights path, fed from a local checkpoint cache instead of the network."""
    from torchvision.models import ResNet18_Weights, resnet18

    torch.manual_seed(1)
    reference = resnet18(weights=None)
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(reference.state_dict(), checkpoints / ResNet18_Weights.DEFAULT.url.split("/")[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    model = models.create_model("resnet18", num_classes=4, pretrained=True)
    assert torch.equal(model.net.conv1.weight, reference.conv1.weight)
    assert model.net.fc.out_features == 4  # the ImageNet head is replaced


def test_small_models_refuse_pretrained():
    with pytest.raises(ValueError, match="has no pretrained weights"):
        models.create_model("lenet", 10, pretrained=True)


def test_unknown_architecture_lists_allowed():
    with pytest.raises(ValueError, match="allowed: cnn5, cnn9, densenet121"):
        models.create_model("vgg99", 10)


def test_seeded_models_do_not_depend_on_the_global_generator():
    torch.manual_seed(0)
    a = models.create_model("lenet", 10, seed=3)
    torch.rand(5)
    b = models.create_model("lenet", 10, seed=3)
    c = models.create_model("lenet", 10, seed=4)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert not torch.equal(a.net[0].weight, c.net[0].weight)


# ------------------------------------------------------------------------ backbones


@pytest.mark.parametrize(
    ("arch", "head"), [("lenet", "net.9"), ("resnet8", "net.head"), ("cnn5", "net.15")]
)
def test_head_name_is_the_last_linear_layer(arch, head):
    model = models.create_model(arch, 3)
    assert models.head_name(model) == head
    assert dict(model.named_modules())[head].out_features == 3
    with pytest.raises(ValueError, match="has no Linear layer"):
        models.head_name(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)))


@pytest.mark.parametrize("arch", ["lenet", "resnet8"])
def test_a_backbone_gives_every_weight_but_the_head(arch):
    # e.g. trained on 26 letters: every weight moved away from any fresh initialisation
    trained = models.create_model(arch, 26, seed=7).state_dict()
    backbone = {k: v + 0.5 if v.is_floating_point() else v for k, v in trained.items()}
    fresh = models.create_model(arch, 10, seed=1)
    model = models.create_model(arch, 10, seed=1, backbone=backbone)
    head = models.head_name(model) + "."
    state = model.state_dict()
    body = [k for k in state if not k.startswith(head)]
    assert len(body) > 2
    for key in body:
        assert torch.equal(state[key], backbone[key]), key
        if state[key].is_floating_point():
            assert not torch.equal(state[key], fresh.state_dict()[key]), key  # it did change
    for key in (head + "weight", head + "bias"):
        assert torch.equal(state[key], fresh.state_dict()[key])  # the head starts fresh
        assert state[key].shape[0] == 10


def test_a_backbone_of_another_architecture_is_an_error_naming_the_weight():
    resnet = models.create_model("resnet8", 10).state_dict()
    with pytest.raises(ValueError, match=r"does not fit this lenet: weight 'net.0.weight' is m"):
        models.create_model("lenet", 10, backbone=resnet)
    lenet = models.create_model("lenet", 10).state_dict()
    lenet["net.3.weight"] = torch.zeros(8, 16, 5, 5)
    with pytest.raises(ValueError, match=r"'net.3.weight' is \(8, 16, 5, 5\) in the backbone, \("):
        models.create_model("lenet", 10, backbone=lenet)


# ------------------------------------------------------------------------ checkpoints


def test_state_dict_round_trip_with_weights_only(tmp_path):
    from stealbench.io import load_state_dict, save_state_dict

    model = models.create_model("resnet8", 10)
    save_state_dict(model.state_dict(), tmp_path / "m.pt")
    other = models.create_model("resnet8", 10)
    other.load_state_dict(load_state_dict(tmp_path / "m.pt"))
    x = torch.rand(3, 1, 28, 28)
    model.eval(), other.eval()
    assert torch.equal(model(x), other(x))


def test_weights_checksum_ignores_the_checkpoint_files_random_id(tmp_path):
    from stealbench.io import load_state_dict, save_state_dict, sha256_file, state_dict_checksum

    model = models.create_model("lenet", 10, seed=3)
    save_state_dict(model.state_dict(), tmp_path / "a.pt")
    save_state_dict(model.state_dict(), tmp_path / "b.pt")
    a, b = load_state_dict(tmp_path / "a.pt"), load_state_dict(tmp_path / "b.pt")
    assert (
        state_dict_checksum(a) == state_dict_checksum(b) == state_dict_checksum(model.state_dict())
    )
    other = models.create_model("lenet", 10, seed=4)
    assert state_dict_checksum(other.state_dict()) != state_dict_checksum(a)
    # the reason for the weights checksum: the files themselves differ
    assert sha256_file(tmp_path / "a.pt") != sha256_file(tmp_path / "b.pt")


def test_load_victim_checks_the_weights_against_its_metrics(tmp_path):
    from stealbench.io import ArtefactError, save_state_dict, state_dict_checksum
    from stealbench.models.victims import load_victim

    model = models.create_model("lenet", 10, seed=0)
    save_state_dict(model.state_dict(), tmp_path / "model.pt")
    meta = {
        "arch": "lenet",
        "num_classes": 10,
        "input_size": None,
        "weights_checksum": state_dict_checksum(model.state_dict()),
    }
    loaded = load_victim(tmp_path / "model.pt", meta)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(loaded(x), model.eval()(x))
    with pytest.raises(ArtefactError, match="does not match the victim's metrics.json"):
        load_victim(tmp_path / "model.pt", {**meta, "weights_checksum": "0" * 64})


def test_load_backbone_state_checks_its_metrics(tmp_path):
    from stealbench.io import ArtefactError, save_state_dict, state_dict_checksum
    from stealbench.models.pretrain import load_backbone_state

    state = models.create_model("lenet", 26, seed=0).state_dict()
    save_state_dict(state, tmp_path / "backbone.pt")
    metrics = {"weights_checksum": state_dict_checksum(state)}
    loaded = load_backbone_state(tmp_path / "backbone.pt", metrics)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    with pytest.raises(ArtefactError, match="does not match its metrics.json"):
        load_backbone_state(tmp_path / "backbone.pt", {"weights_checksum": "0" * 64})


def test_a_victims_posterior_does_not_depend_on_the_batch_it_came_in():
    """victim_posteriors: the answer to an image is the same to the last bit whether it was
    asked alone, among 15, among 333 or among 1000 (a CPU's kernels round differently with a
    batch's size: unpadded, batches under 16 rows differ from batches of 1000 here)."""
    import numpy as np

    from stealbench.models.architectures import create_model
    from stealbench.models.victims import victim_posteriors

    model = create_model("lenet", 10, seed=0).eval()
    images = np.random.default_rng(0).integers(0, 256, (1000, 28, 28, 1), dtype=np.uint8)
    whole = victim_posteriors(model, images)
    for size in (1, 7, 15, 64, 333):
        cut = np.concatenate(
            [victim_posteriors(model, images[i : i + size]) for i in range(0, 1000, size)]
        )
        np.testing.assert_array_equal(cut, whole, err_msg=f"cut into batches of {size}")
    # and it is what a server computes from the float32 NCHW tensor a client sends
    from stealbench.victim.contract import InputContract

    sent = torch.from_numpy(InputContract(28, 1).prepare(images[:64]))
    with torch.no_grad():
        served = torch.softmax(model(sent), dim=1).numpy()
    np.testing.assert_array_equal(served, whole[:64])
