"""The command line, end to end (``python -m deconvlab explain ...``)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from deconvlab import cli

PNG = b"\x89PNG\r\n\x1a\n"


def _run(*args, env=None):
    full_env = {**os.environ, "DECONVLAB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "deconvlab", *map(str, args)],
        capture_output=True, text=True, timeout=300, env=full_env,
    )


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("deconvlab: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_explain_sample_offline_end_to_end(tmp_path):
    out = tmp_path / "star.png"
    r = _run("explain", "--sample", "star", "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == PNG
    assert "teaching predicts" in r.stdout and "gradient, deconvnet, guided_backprop" in r.stdout
    w, h = Image.open(out).size
    assert w > 2.5 * h, "input and three maps side by side"


def test_bad_image_path_end_to_end(tmp_path):
    r = _run("explain", tmp_path / "missing.jpg", "-o", tmp_path / "o.png")
    assert r.returncode != 0
    assert "missing.jpg" in _one_error_line(r.stderr)
    assert not (tmp_path / "o.png").exists()


def test_installed_console_script_if_present(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "deconvlab")
    if not os.path.exists(exe):
        pytest.skip("package not installed as a console script")
    r = subprocess.run([exe, "explain", "--sample", "ring", "--rule", "deconvnet",
                        "-o", tmp_path / "r.png"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


# In-process runs of cli.main for the remaining cases (same code path, faster).


def _main(capsys, *args):
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "args",
    [
        ("--sample", "chelsea"),  # a photo through the teaching model (resized to 64 px)
        ("--sample", "ring", "--rule", "deconvnet", "--target", "3"),
        ("--sample", "disc", "--rule", "gradient,guided_backprop", "--target", "triangle"),
        ("--sample", "cross", "--layer", "features.8", "--kind", "overlay"),
        ("--sample", "square", "--kind", "heatmap", "--seed", "4"),
    ],
)
def test_explain_variants(tmp_path, capsys, args):
    out = tmp_path / "f.png"
    code, _stdout, err = _main(capsys, "explain", *args, "-o", out)
    assert code == 0, err
    assert out.read_bytes()[:8] == PNG


def test_explain_an_image_file(tmp_path, capsys):
    from deconvlab.data import shape_sample

    img = (shape_sample("triangle").images[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(img).resize((100, 80)).save(tmp_path / "t.jpg")
    code, stdout, err = _main(capsys, "explain", tmp_path / "t.jpg", "-o", tmp_path / "f.pdf")
    assert code == 0, err
    assert (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
    assert "t.jpg" in stdout


def test_untrained_torchvision_model(tmp_path, capsys):
    code, _stdout, err = _main(capsys, "explain", "--sample", "coffee", "--model", "squeezenet1_1",
                              "--weights", "none", "--rule", "guided_backprop",
                              "-o", tmp_path / "c.png")
    assert code == 0, err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--sample", "star", "--model", "resnet19"), "unknown model 'resnet19'"),
        (("--sample", "star", "--target", "hexagon"), "unknown class 'hexagon'"),
        (("--sample", "star", "--target", "9"), "class index 9 out of range"),
        (("--sample", "star", "--rule", "lrp"), "unknown rule 'lrp'"),
        (("--sample", "star", "--layer", "features.99"), "no layer 'features.99'"),
        (("--sample", "dog",), "unknown sample 'dog'"),
        ((), "give either an IMAGE path or --sample NAME"),
        (("img.png", "--sample", "star"), "give either an IMAGE path or --sample NAME"),
        (("--sample", "star", "--kind", "rainbow"), "invalid choice: 'rainbow'"),
    ],
)
def test_bad_inputs_give_one_line(tmp_path, capsys, args, needle):
    code, _stdout, err = _main(capsys, "explain", *args, "-o", tmp_path / "o.png")
    assert code == 2
    assert needle in _one_error_line(err)
    assert not (tmp_path / "o.png").exists()


def test_missing_output_folder_and_option(tmp_path, capsys):
    code, _, err = _main(capsys, "explain", "--sample", "star", "-o", tmp_path / "no" / "o.png")
    assert code == 2 and "does not exist" in _one_error_line(err)
    code, _, err = _main(capsys, "explain", "--sample", "star")
    assert code == 2 and "-o/--output" in _one_error_line(err)
    code, _, err = _main(capsys)
    assert code == 2 and "command is required" in _one_error_line(err)


def test_imagenet_model_without_weights_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("DECONVLAB_OFFLINE", "1")
    code, _, err = _main(capsys, "explain", "--sample", "chelsea", "--model", "resnet18",
                         "-o", tmp_path / "o.png")
    line = _one_error_line(err)
    assert code != 0 and "resnet18-f37072fd.pth" in line
    assert str(tmp_path / "hub" / "checkpoints") in line
