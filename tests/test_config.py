"""Trial config validation: unknown keys and bad values name the key and what is allowed."""

from __future__ import annotations

import pytest

from trainables.config import ConfigError, TrialConfig

GOOD = {"model": "resnet18", "optimizer": "sgd", "lr": 0.01, "epochs": 2, "image_size": 32}


def test_good_config_round_trips():
    cfg = TrialConfig.from_dict(GOOD)
    assert cfg.lr == 0.01 and cfg.momentum == 0.0 and cfg.batch_size == 32
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"learning_rate": 0.1}, "unknown config key(s) ['learning_rate']"),
        ({"model": "resnet19"}, "'model' = 'resnet19' is invalid; allowed: one of"),
        ({"optimizer": "rmsprop"}, "allowed: one of sgd, adam"),
        ({"lr": 0.0}, "'lr' = 0.0 is invalid; allowed: a number > 0 and <= 1"),
        ({"lr": -0.1}, "'lr' = -0.1"),
        ({"lr": "0.1"}, "'lr' = '0.1' is invalid; allowed: a number"),
        ({"lr": float("nan")}, "'lr' = nan"),
        ({"epochs": 0}, "'epochs' = 0 is invalid; allowed: an integer >= 1"),
        ({"epochs": 1.5}, "'epochs' = 1.5 is invalid; allowed: an integer"),
        ({"batch_size": 0}, "'batch_size' = 0"),
        ({"momentum": 1.0}, "'momentum' = 1.0 is invalid; allowed: 0 <= momentum < 1"),
        ({"image_size": 16}, "'image_size' = 16 is invalid; allowed: 32..1024 for resnet18"),
        ({"in_channels": 2}, "'in_channels' = 2 is invalid; allowed: 1 or 3"),
        ({"channels_last": "yes"}, "'channels_last' = 'yes' is invalid; allowed: true or false"),
        ({"weight_decay": -1.0}, "'weight_decay' = -1.0"),
    ],
)
def test_bad_configs_name_key_and_allowed(change, needle):
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_dict({**GOOD, **change})
    assert needle in str(err.value)


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"missing config key\(s\) \['lr'\]"):
        TrialConfig.from_dict({k: v for k, v in GOOD.items() if k != "lr"})
