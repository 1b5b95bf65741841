"""The command line, end to end (``python -m deconvlab explain ...``)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from deconvlab import cli

PNG = b"\x89PNG\r\n\x1a\n"


def _run(*args, env=None):
    full_env = {**os.environ, "DECONVLAB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "deconvlab", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=full_env,
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
    assert w > 2 * h, "input and three maps side by side"


def test_bad_image_path_end_to_end(tmp_path):
    r = _run("explain", tmp_path / "missing.jpg", "-o", tmp_path / "o.png")
    assert r.returncode != 0
    assert "missing.jpg" in _one_error_line(r.stderr)
    assert not (tmp_path / "o.png").exists()


def test_installed_console_script_if_present(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "deconvlab")
    if not os.path.exists(exe):
        pytest.skip("package not installed as a console script")
    r = subprocess.run(
        [exe, "explain", "--sample", "ring", "--rule", "deconvnet", "-o", tmp_path / "r.png"],
        capture_output=True,
        text=True,
        timeout=300,
    )
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


@pytest.mark.parametrize("layer", [(), ("--layer", "features.8")])
def test_overlay_is_visible(tmp_path, capsys, monkeypatch, layer):
    """``--kind overlay`` draws the maps over the greyed input: most pixels visibly differ from it."""
    import figure_checks

    from deconvlab import viz

    figures, real = [], viz.figure_grid

    def keep(*args, **kwargs):
        figures.append(real(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(viz, "figure_grid", keep)
    code, _, err = _main(
        capsys, "explain", "--sample", "cross", *layer, "--kind", "overlay", "-o", tmp_path / "o.png"
    )
    assert code == 0, err
    (fig,) = figures
    panels = figure_checks.axes_labelled(fig, "panel")
    pictures = [ax.images[0].get_array() for ax in panels]
    assert len(pictures) == 4 and len(figure_checks.axes_labelled(fig, "key")) == 3
    for overlay in pictures[1:]:
        assert figure_checks.visible_fraction(overlay, pictures[0]) > 0.5
    figure_checks.check_figure(fig, viz.MAX_WIDTH)


def test_explain_an_image_file(tmp_path, capsys):
    from deconvlab.data import shape_sample

    img = (shape_sample("triangle").images[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(img).resize((100, 80)).save(tmp_path / "t.jpg")
    code, stdout, err = _main(capsys, "explain", tmp_path / "t.jpg", "-o", tmp_path / "f.pdf")
    assert code == 0, err
    assert (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
    assert "t.jpg" in stdout


def test_untrained_torchvision_model(tmp_path, capsys):
    code, _stdout, err = _main(
        capsys,
        "explain",
        "--sample",
        "coffee",
        "--model",
        "squeezenet1_1",
        "--weights",
        "none",
        "--rule",
        "guided_backprop",
        "-o",
        tmp_path / "c.png",
    )
    assert code == 0, err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--sample", "star", "--model", "resnet19"), "unknown model 'resnet19'"),
        (("--sample", "star", "--target", "hexagon"), "unknown class 'hexagon'"),
        (("--sample", "star", "--target", "9"), "class index 9 out of range"),
        (("--sample", "star", "--rule", "lrp"), "unknown rule 'lrp'"),
        (("--sample", "star", "--layer", "features.99"), "no layer 'features.99'"),
        (
            (
                "--sample",
                "dog",
            ),
            "unknown sample 'dog'",
        ),
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
    code, _, err = _main(
        capsys, "explain", "--sample", "chelsea", "--model", "resnet18", "-o", tmp_path / "o.png"
    )
    line = _one_error_line(err)
    assert code == 2 and "resnet18-f37072fd.pth" in line
    assert str(tmp_path / "hub" / "checkpoints") in line


# -- images of other bit depths, decompression bombs, exit statuses -----------------------------


def _grey16(path, values: np.ndarray) -> None:
    Image.fromarray(values.astype(np.uint16)).save(path)  # mode I;16: a 16-bit grey PNG
    with Image.open(path) as im:
        assert im.mode == "I;16"


def test_16_bit_image_is_scaled_by_its_bit_depth(tmp_path):
    values = np.linspace(0, 40000, 64 * 64).reshape(64, 64)  # dark to 61% grey, mostly > 255
    _grey16(tmp_path / "g16.png", values)
    args = cli._parser().parse_args(["explain", str(tmp_path / "g16.png"), "-o", "o.png"])
    x, _mask, _what = cli._load_input(args, 64, False, None)
    assert x.shape == (1, 3, 64, 64)
    expected = torch.from_numpy(values.astype(np.uint16) / 65535.0).float()
    torch.testing.assert_close(x[0, 1], expected, atol=1e-6, rtol=0)
    assert abs(float(x.mean()) - 40000 / 2 / 65535) < 1e-3, "not clipped to white"


def test_16_bit_image_end_to_end(tmp_path, capsys):
    _grey16(tmp_path / "g16.png", np.random.default_rng(0).integers(0, 65536, (80, 100)))
    code, stdout, err = _main(capsys, "explain", tmp_path / "g16.png", "-o", tmp_path / "f.png")
    assert code == 0, err
    assert "g16.png" in stdout and (tmp_path / "f.png").read_bytes()[:8] == PNG


# 64 x 64 = 4096 px: more than twice the limit (Pillow raises), then between once and twice (it warns)
@pytest.mark.parametrize("limit", [1000, 3000])
def test_decompression_bomb_is_refused_with_status_2(tmp_path, capsys, monkeypatch, limit):
    Image.new("RGB", (64, 64), "white").save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    code, _stdout, err = _main(capsys, "explain", tmp_path / "bomb.png", "-o", tmp_path / "o.png")
    line = _one_error_line(err)
    assert code == 2 and "bomb.png" in line and "decompression bomb" in line
    assert "MAX_IMAGE_PIXELS" in line
    assert not (tmp_path / "o.png").exists()


def test_unreadable_image_exits_2(tmp_path, capsys):
    (tmp_path / "text.png").write_text("not an image")
    code, _stdout, err = _main(capsys, "explain", tmp_path / "text.png", "-o", tmp_path / "o.png")
    assert code == 2 and "cannot read image" in _one_error_line(err)


def test_a_layer_that_runs_twice_is_a_user_error(tmp_path, capsys):
    # resnet18 calls each BasicBlock's one ReLU module twice
    code, _stdout, err = _main(
        capsys,
        "explain",
        "--sample",
        "coffee",
        "--model",
        "resnet18",
        "--weights",
        "none",
        "--layer",
        "layer1.0.relu",
        "-o",
        tmp_path / "o.png",
    )
    assert code == 2 and "'layer1.0.relu' runs 2 times" in _one_error_line(err)


def test_unknown_weights_and_corrupt_weights_exit_2(tmp_path, capsys, monkeypatch):
    code, _stdout, err = _main(
        capsys,
        "explain",
        "--sample",
        "star",
        "--model",
        "resnet18",
        "--weights",
        "IMAGENET9K",
        "-o",
        tmp_path / "o.png",
    )
    assert code == 2 and "unknown weights 'IMAGENET9K'" in _one_error_line(err)
    from deconvlab import models

    bad = tmp_path / "teaching_model.safetensors"
    bad.write_bytes(b"corrupt")
    monkeypatch.setattr(models, "TEACHING_WEIGHTS", bad)
    code, _stdout, err = _main(capsys, "explain", "--sample", "star", "-o", tmp_path / "o.png")
    assert code == 2 and "teaching_model.safetensors" in _one_error_line(err)


def test_an_internal_error_exits_1_and_says_so(tmp_path, capsys, monkeypatch):
    from deconvlab import attribution

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(attribution, "attribute", broken)
    code, _stdout, err = _main(capsys, "explain", "--sample", "star", "-o", tmp_path / "o.png")
    line = _one_error_line(err)
    assert code == 1 and "internal error: KeyError" in line and "--debug" in line
    with pytest.raises(KeyError, match="a bug"):
        cli.main(["explain", "--sample", "star", "-o", str(tmp_path / "o.png"), "--debug"])


def test_documented_exit_statuses():
    doc = cli.__doc__
    assert "Exit status" in doc
    assert "\n2\n" in doc and "\n1\n" in doc and "decompression-bomb" in doc
