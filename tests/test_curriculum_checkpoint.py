"""Checkpoints: atomic, pruned, and refused when corrupt or foreign, naming the file."""

import pickle

import pytest
import torch

import curriculum.checkpoint as ckpt


def state(step):
    return {"model": {"w": torch.full((3,), float(step))}, "scheduler": '{"stage": 1}', "elapsed": 1.5}


def test_round_trip_and_pruning(tmp_path):
    for step in (10, 20, 30):
        path = ckpt.save_checkpoint(tmp_path, state(step), step)
        assert path.name == ckpt.checkpoint_name(step)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [ckpt.checkpoint_name(20), ckpt.checkpoint_name(30)]
    loaded = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))
    assert loaded["step"] == 30 and torch.equal(loaded["model"]["w"], torch.full((3,), 30.0))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_truncated_checkpoint_is_refused_naming_the_file(tmp_path):
    path = ckpt.save_checkpoint(tmp_path, state(1), 1)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ckpt.CheckpointError, match=path.name):
        ckpt.load_checkpoint(path)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_foreign_pickles_are_never_unpickled(tmp_path, capsys):
    evil = tmp_path / ckpt.checkpoint_name(5)
    evil.write_bytes(pickle.dumps({"format": ckpt.FORMAT, "x": Payload()}))
    with pytest.raises(ckpt.CheckpointError, match=evil.name):
        ckpt.load_checkpoint(evil)
    assert "must never run" not in capsys.readouterr().out
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ckpt.CheckpointError, match="not a checkpoint of this project"):
        ckpt.load_checkpoint(other)
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    good = ckpt.save_checkpoint(tmp_path, state(10), 10)

    def failing_save(obj, handle):
        handle.write(b"partial bytes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        ckpt.save_checkpoint(tmp_path, state(20), 20)
    assert ckpt.list_checkpoints(tmp_path) == [good]
    assert ckpt.load_checkpoint(good)["step"] == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]
