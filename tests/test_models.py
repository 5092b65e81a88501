import pytest
import torch

from stealbench import config, models


def test_registry_agrees_with_config_schema():
    schema = config.load_schema()
    assert set(schema["definitions"]["arch"]["enum"]) == set(models.ARCHITECTURES)


@pytest.mark.parametrize("arch", sorted(models.ARCHITECTURES))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28), (3, 32, 32), (1, 64, 48)])
def test_every_architecture_takes_any_image_shape(arch, shape):
    torch.manual_seed(0)
    model = models.create_model(arch, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.rand(2, *shape))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_unknown_architecture_lists_allowed():
    with pytest.raises(ValueError, match="allowed: lenet, resnet8"):
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
