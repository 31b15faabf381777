"""Every manifest carries the SHA-256 of its artifact; a changed byte or a lying manifest is refused."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from torchslim.artifacts import FORMAT_VERSION, load, manifest_path, read_manifest, save_exported
from torchslim.cli import run
from torchslim.core.integrity import sha256_file
from torchslim.errors import ArtifactError


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)).eval()
    return save_exported(model, tmp_path_factory.mktemp("a") / "m.pt2", (torch.randn(2, 8),))


def _copy(artifact, tmp_path, edit_manifest=None):
    dst = tmp_path / artifact.name
    dst.write_bytes(artifact.read_bytes())
    manifest = json.loads(manifest_path(artifact).read_text())
    if edit_manifest:
        edit_manifest(manifest)
    manifest_path(dst).write_text(json.dumps(manifest))
    return dst


def test_the_manifest_records_the_digest_of_the_file(artifact):
    manifest = read_manifest(artifact)
    assert manifest.sha256 == {"m.pt2": sha256_file(artifact)}


def test_a_changed_byte_is_refused_naming_the_file(artifact, tmp_path):
    copy = _copy(artifact, tmp_path)
    data = bytearray(copy.read_bytes())
    data[-30] ^= 0x01  # in the zip directory: no member's CRC covers it
    copy.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match the SHA-256") as e:
        load(copy)
    assert str(copy) in e.value.message


def test_the_cli_exits_2_on_a_digest_mismatch(artifact, tmp_path, capsys):
    copy = _copy(artifact, tmp_path, lambda m: m.update(sha256={"m.pt2": "0" * 64}))
    assert run(["bench", "--model", str(copy), "--batch-sizes", "1"]) == 2
    assert "SHA-256" in capsys.readouterr().err


def test_a_manifest_naming_a_file_outside_its_folder_is_refused(artifact, tmp_path):
    copy = _copy(artifact, tmp_path, lambda m: m["sha256"].update({"../../etc/passwd": "0" * 64}))
    with pytest.raises(ArtifactError, match="outside its folder"):
        read_manifest(copy)


def test_a_missing_side_file_is_named(artifact, tmp_path):
    copy = _copy(artifact, tmp_path, lambda m: m["sha256"].update({"m.pt2.data": "0" * 64}))
    with pytest.raises(ArtifactError, match="incomplete.*m.pt2.data"):
        read_manifest(copy)


def test_an_artifact_from_before_digests_loads_with_a_warning(artifact, tmp_path):
    copy = _copy(artifact, tmp_path, lambda m: m.pop("sha256"))
    with pytest.warns(UserWarning, match="before torchslim recorded digests"):
        fn = load(copy)
    assert fn(torch.randn(3, 8)).shape == (3, 3)


def test_a_clean_artifact_loads_without_a_warning(artifact):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load(artifact)(torch.randn(1, 8)).shape == (1, 3)


@pytest.mark.parametrize(("edit", "field"), [
    (lambda m: m.update(format_version="2"), "format_version"),
    (lambda m: m["inputs"][0].update(shape=[-1, "x"]), "inputs\\[0\\].shape"),
    (lambda m: m["inputs"][0].update(dtype="float99"), "float99"),
    (lambda m: m.update(inputs=[]), "inputs"),
    (lambda m: m.update(surprise=1), "surprise"),
])
def test_a_hand_edited_manifest_is_named_as_bad_input(artifact, tmp_path, capsys, edit, field):
    copy = _copy(artifact, tmp_path, edit)
    with pytest.raises(ArtifactError, match=field):
        read_manifest(copy)
    assert run(["bench", "--model", str(copy), "--batch-sizes", "1"]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_a_newer_format_is_refused_with_upgrade_advice_not_called_corrupt(artifact, tmp_path):
    # A newer torchslim may add fields this one does not know: the version is read first.
    copy = _copy(artifact, tmp_path, lambda m: m.update(format_version=FORMAT_VERSION + 1, new_field={"x": 1}))
    with pytest.raises(ArtifactError, match=f"newer torchslim \\(format {FORMAT_VERSION + 1}.*upgrade torchslim"):
        read_manifest(copy)


def test_a_format_1_manifest_still_loads(artifact, tmp_path):
    copy = _copy(artifact, tmp_path, lambda m: m.update(format_version=1))
    assert read_manifest(copy).format_version == 1
    assert load(copy)(torch.randn(2, 8)).shape == (2, 3)
