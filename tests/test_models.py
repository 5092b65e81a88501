import pytest
import torch

from stealbench import config, models

SMALL = [a for a in models.ARCHITECTURES if a not in models.TORCHVISION_MODELS]


def test_registry_agrees_with_config_schema():
    schema = config.load_schema()
    assert set(schema["definitions"]["arch"]["enum"]) == set(models.ARCHITECTURES)


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
    from stealbench.victims import load_victim

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
