"""expert.collect --backend ray: recorders as Ray actors, the same dataset as local recording."""

import sys

import pytest

from configflags import UserError
from dataset.verify import check_dataset
from envs.options import EnvOptions
from expert.collect import content_hash, main
from expert.collect_config import CollectConfig
from tests.extras import require_extra

TINY_ENV = EnvOptions(image_size=32, n_segments=1, segment_length=(4.0, 5.0))


def _config(out, **kwargs):
    return CollectConfig(out=out, quiet=True, **{"runs": 4, "env": TINY_ENV, **kwargs})


def test_backend_and_address_are_checked_before_recording(tmp_path):
    with pytest.raises(ValueError, match="--backend must be one of local, ray"):
        _config(tmp_path, backend="slurm")
    with pytest.raises(ValueError, match="add --backend ray"):
        _config(tmp_path, address="auto")


def test_without_the_ray_extra_the_backend_names_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if not installed
    with pytest.raises(UserError, match=r"needs the 'ray' extra: pip install -e '\.\[ray\]'"):
        main(_config(tmp_path / "d", backend="ray"))
    assert not (tmp_path / "d").exists()


def test_content_hash_tells_datasets_apart(tmp_path):
    main(_config(tmp_path / "a", runs=3))
    main(_config(tmp_path / "b", runs=3, workers=2))
    main(_config(tmp_path / "c", runs=3, seed=1))
    assert content_hash(tmp_path / "a") == content_hash(tmp_path / "b")
    assert content_hash(tmp_path / "a") != content_hash(tmp_path / "c")


def test_ray_recorders_record_the_local_content(ray_session, tmp_path):
    # a length window drops some runs, so kept and dropped attempts both cross the wire
    local = main(_config(tmp_path / "local", max_steps=40, keep="all"))
    remote = main(_config(tmp_path / "ray", max_steps=40, keep="all", backend="ray", workers=3))
    assert remote.kept == local.kept == 4
    assert remote.manifest["dropped"] == local.manifest["dropped"] != []
    assert content_hash(tmp_path / "ray") == content_hash(tmp_path / "local")
    report = check_dataset(tmp_path / "ray")
    assert report.ok, report.problems
    assert not list((tmp_path / "ray").rglob(".*tmp*")), "temporary files left behind"


def test_an_unreachable_address_is_refused_before_recording(tmp_path):
    require_extra("ray", "ray")
    # port 1 on the loopback: refused at once, nothing is sent anywhere else
    with pytest.raises(UserError, match="cannot reach Ray at 127.0.0.1:1"):
        main(_config(tmp_path / "d", backend="ray", address="127.0.0.1:1"))
    assert not list((tmp_path / "d").glob("runs/*.h5"))
