"""Configuration: the guide's defaults, validation that names the fix, precedence, and the password kept secret."""

from __future__ import annotations

import json
import warnings

import pytest

from resontech_nb import FederationConfig, ResonTechConfig, TrainingConfig
from resontech_nb.config.settings import as_config
from resontech_nb.errors import ConfigError

SECRET = "s3cr3t-PASSWORD"


def test_defaults_match_the_integration_guide(clean_env):
    rt = ResonTechConfig.load()
    assert (rt.base_url, rt.email, rt.password, rt.sftp_key_file) == ("", "", "", "~/.ssh/id_ed25519")
    training = TrainingConfig.load()
    beyond_the_guide = {
        "val_fraction": 0.2, "seed": 0, "cache_mb": 512, "lr_schedule": "constant", "balance_labels": False
    }
    assert training.to_dict() == beyond_the_guide | {
        "num_classes": 0,
        "local_epochs": 2,
        "batch_size": 32,
        "learning_rate": 0.001,
        "img_size": 224,
        "manifest_file": "manifest.ndjson",
    }
    federation = FederationConfig.load()
    beyond_the_guide = {
        "train_timeout": 6000,
        "select_metric": "",
        "cross_site_eval": False,
        "task_request_interval": 0.1,
        "task_check_period": 0.02,
        "memory_gc_rounds": 0,
        "download_chunk_mb": 16.0,
        "algorithm": "fedavg",
        "fedprox_mu": 0.01,
        "fedopt_optimizer": "sgd",
        "fedopt_lr": 0.0,
        "fedopt_momentum": 0.6,
        "privacy": "",
        "tracking": "",
        "tracking_models": False,
    }
    assert federation.to_dict() == beyond_the_guide | {
        "num_rounds": 5,
        "min_clients": 1,
        "wait_time_after_min_received": 10,
        "heart_beat_timeout": 600,
        "job_name": "rt_job",
    }


@pytest.mark.parametrize(
    "cls, values, words",
    [
        (TrainingConfig, {"batch_size": 0}, "batch_size must be >= 1"),
        (TrainingConfig, {"batch_size": "many"}, "batch_size must be an integer"),
        (TrainingConfig, {"learning_rate": -1}, "learning_rate must be > 0"),
        (TrainingConfig, {"num_classes": -2}, "num_classes must be >= 0"),
        (TrainingConfig, {"manifest_file": "sub/manifest.ndjson"}, "file name at the shard's root"),
        (FederationConfig, {"num_rounds": 0}, "num_rounds must be >= 1"),
        (FederationConfig, {"train_timeout": 0}, "train_timeout must be >= 1 second"),
        (FederationConfig, {"select_metric": "val acc"}, "must be a validation metric name"),
        (TrainingConfig, {"val_fraction": 1.0}, "val_fraction must be at least 0 and below 1"),
        (FederationConfig, {"min_clients": 0}, "min_clients must be >= 1"),
        (FederationConfig, {"job_name": "my job!"}, "job_name"),
        (ResonTechConfig, {"base_url": "api.example.com"}, "must start with http:// or https://"),
        (ResonTechConfig, {"email": "nobody"}, "is not an email address"),
        (ResonTechConfig, {"s3_bucket": "Bad_Bucket"}, "not a valid S3 bucket name"),
    ],
)
def test_bad_values_are_refused_with_a_message_naming_the_field(clean_env, cls, values, words):
    with pytest.raises(ConfigError, match=words):
        cls(**values)
    with pytest.raises(ValueError):  # ConfigError is also a ValueError for callers that catch that
        cls.load(**values)


def test_strings_are_coerced_to_the_field_type(clean_env):
    training = TrainingConfig(batch_size="16", learning_rate="0.01")
    assert training.batch_size == 16 and training.learning_rate == 0.01
    assert training.replace(local_epochs="3").local_epochs == 3


def test_precedence_defaults_then_file_then_env_then_explicit(clean_env, tmp_path):
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        '[training]\nbatch_size = 8\nlocal_epochs = 4\n[federation]\nnum_rounds = 7\n[resontech]\nemail = "a@b.io"\n'
    )
    clean_env.setenv("RESONTECH_NB_CONFIG", str(config_file))
    assert TrainingConfig.load().batch_size == 8
    assert FederationConfig.load().num_rounds == 7
    clean_env.setenv("RESONTECH_BATCH_SIZE", "12")
    training = TrainingConfig.load()
    assert (training.batch_size, training.local_epochs) == (12, 4)  # env beats file; file beats default
    assert TrainingConfig.load(batch_size=64).batch_size == 64  # explicit beats env
    assert ResonTechConfig.load().email == "a@b.io"
    assert as_config(TrainingConfig, {"img_size": 32}).img_size == 32


def test_unknown_key_in_the_config_file_names_the_file(clean_env, tmp_path):
    config_file = tmp_path / "config.toml"
    config_file.write_text("[training]\nbatchsize = 8\n")
    clean_env.setenv("RESONTECH_NB_CONFIG", str(config_file))
    with pytest.raises(ConfigError, match="unknown key 'batchsize'.*config.toml"):
        TrainingConfig.load()


def test_password_is_never_in_repr_str_or_to_dict(clean_env):
    config = ResonTechConfig(base_url="https://api.example.com", email="me@example.com", password=SECRET)
    assert config.password == SECRET
    for text in (repr(config), str(config), json.dumps(config.to_dict()), repr(config.replace(s3_region="eu-west-1"))):
        assert SECRET not in text
    assert "password" not in config.to_dict()
    assert "'***'" in repr(config)


def test_password_from_the_environment(clean_env):
    clean_env.setenv("RESONTECH_PASSWORD", SECRET)
    config = ResonTechConfig.load()
    assert config.password == SECRET and SECRET not in repr(config)


def test_sftp_key_file_is_accepted_with_a_deprecation_warning(clean_env):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ResonTechConfig()  # the default key path does not warn
    with pytest.warns(DeprecationWarning, match="SFTP is deprecated"):
        config = ResonTechConfig(sftp_key_file="~/.ssh/other_key")
    assert config.sftp_key_file == "~/.ssh/other_key"


def test_an_unknown_learning_rate_schedule_names_the_known_ones(clean_env):
    with pytest.raises(ConfigError, match="lr_schedule.*constant, cosine"):
        TrainingConfig(lr_schedule="step")
    assert TrainingConfig(lr_schedule="cosine", balance_labels=True).to_dict()["balance_labels"] is True
