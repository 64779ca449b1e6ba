"""The offline ImageNet backbones load into timm's networks, name for name and shape for shape."""

import pytest
import timm

from core.backbones import OFFLINE_LITE, offline_efficientnet_lite_state
from core.modelfile import WeightsError


@pytest.mark.parametrize("variant", OFFLINE_LITE)
def test_offline_weights_fit_timm(variant):
    state = offline_efficientnet_lite_state(variant)
    model = timm.create_model(f"efficientnet_lite{variant}", pretrained=False)
    model.load_state_dict(state)  # strict: every tensor of timm's network, none left over
    assert state["conv_stem.weight"].abs().sum() > 0


def test_no_offline_weights_for_lite3():
    with pytest.raises(WeightsError, match="no offline weights for efficientnet_lite3"):
        offline_efficientnet_lite_state(3)
