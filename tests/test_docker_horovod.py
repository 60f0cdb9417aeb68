"""docker/: the SageMaker training image's Horovod (defect 6 of issue 14: the TF 2.14 training
image has none). Its build steps are docker/install_horovod.sh, the script the Makefile's
set-up builds this machine's (CPU, Gloo) Horovod with; here they run dry, and the script's
--check runs for real against the venv's TensorFlow and Horovod."""
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPT = ROOT / "docker" / "install_horovod.sh"
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def script(*args, timeout=120):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def dockerfile_runs():
    """The Dockerfile's install_horovod.sh invocations, its ARG defaults substituted."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    args = dict(re.findall(r'^ARG (\w+)=("[^"]*"|\S+)', text, re.M))
    args = {k: v.strip('"') for k, v in args.items()}
    runs = []
    for line in re.findall(r"^RUN (.*)$", text, re.M):
        for part in line.split("&&"):
            if "install_horovod.sh" in part:
                part = re.sub(r'"?\$\{(\w+)\}"?', lambda m: args[m.group(1)], part)
                words = shlex.split(part)
                runs.append(words[words.index(next(w for w in words
                                                   if w.endswith("install_horovod.sh"))) + 1:])
    return args, runs


def test_dockerfile_builds_horovod_with_mpi_and_nccl_on_the_tf_214_image(tmp_path):
    args, runs = dockerfile_runs()
    assert "tensorflow-training:2.14.1-gpu" in args["BASE_IMAGE"]
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", DOCKERFILE.read_text(), re.M)
    assert "COPY docker/install_horovod.sh" in DOCKERFILE.read_text()
    build, check = runs
    assert "--check" in check and "--check" not in build
    proc = script(*build, "--dry-run", "--wheel-dir", str(tmp_path / "wheels"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for var in ("HOROVOD_WITH_TENSORFLOW=1", "HOROVOD_WITH_MPI=1", "HOROVOD_WITH_GLOO=1",
                "HOROVOD_GPU_OPERATIONS=NCCL", "HOROVOD_WITHOUT_PYTORCH=1"):
        assert var in out
    assert "HOROVOD_WITHOUT_MPI" not in out
    wheel = next(line for line in out.splitlines() if " wheel " in line)
    assert "horovod==0.28.1" in wheel and "--no-build-isolation" in wheel
    assert out.splitlines()[-1].startswith("+ python3 -m pip install")
    assert not (tmp_path / "wheels").exists()                    # a dry run: nothing done


def test_makefile_builds_with_the_same_script_and_its_wheel_cache(tmp_path):
    """`make setup`'s Horovod step is the script (Gloo, no MPI, CPU), then its --check; with
    the wheel in the cache nothing is built (run dry here: nothing is installed)."""
    venv = tmp_path / "venv"
    proc = subprocess.run(["make", "-n", f"VENV={venv}", f"{venv}/.installed"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.replace("\\\n", " ").splitlines()
    build = next(line for line in lines if "install_horovod.sh" in line and "--check" not in line)
    check = next(line for line in lines if "install_horovod.sh --check" in line)
    words = shlex.split(build)
    flags = words[words.index("docker/install_horovod.sh") + 1:]
    assert {"--without-mpi", "--with-gloo"} <= set(flags) and "--with-mpi" not in flags
    assert "--without-mpi" in check and "--with-gloo" in check
    wheels = Path(flags[flags.index("--wheel-dir") + 1])
    assert wheels.name.startswith("tf") and wheels.parent.name == "wheels"
    cached = sorted(wheels.glob("horovod-0.28.1-*.whl"))
    if not cached:
        pytest.skip(f"no Horovod wheel in {wheels} (make setup caches it)")
    flags[flags.index("--pip") + 1] = "pip"   # the make-time venv does not exist
    proc = script(*flags, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert f"using the cached wheel {cached[0]}" in proc.stdout
    assert "wheel -q" not in proc.stdout and "building" not in proc.stdout


def test_check_against_the_installed_horovod():
    """The venv's Horovod (Gloo, CPU): the set-up's flags pass, the image's flags fail in one
    line naming what is missing; an environment without it fails in one line."""
    python = sys.executable
    want_cpu = subprocess.Popen(["bash", str(SCRIPT), "--check", "--without-mpi", "--with-gloo",
                                 "--python", python], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT)
    image = script("--check", "--with-mpi", "--with-gloo", "--gpu-operations", "nccl",
                   "--python", python)
    out, err = want_cpu.communicate(timeout=120)
    assert want_cpu.returncode == 0, err
    assert out.strip().splitlines() == [
        f"horovod 0.28.1 on tensorflow {tf_version()}: controllers gloo, tensor operations cpu"]
    assert image.returncode == 1
    assert len(image.stderr.strip().splitlines()) == 1
    assert image.stderr.strip().endswith("expected otherwise (mpi missing, nccl missing)")
    bare = shutil.which("python3", path="/usr/bin:/bin")
    if bare and subprocess.run([bare, "-c", "import horovod"], capture_output=True).returncode:
        none = script("--check", "--python", bare)
        assert none.returncode == 1 and len(none.stderr.strip().splitlines()) == 1
        assert "horovod.tensorflow does not import" in none.stderr
    bad = script("--gpu-operations", "rccl")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "install_horovod.sh: --gpu-operations must be nccl or none, got rccl")


def tf_version():
    from importlib.metadata import version

    return version("tensorflow-cpu")
