"""The executor check's verdict (spark.check_executors), on reports as executors send them;
tests/test_standalone.py runs it on a real cluster."""
import pytest

from reviewlake import __version__
from reviewlake.errors import UserError
from reviewlake.executors import executor_id, judge, zip_of

ZIP = "reviewlake-0.1.0.zip"


def report(file, version=__version__, executor="0", error=None):
    url = f"http://127.0.0.1:4242/logPage/?appId=app-1&executorId={executor}&logType=stderr"
    out = {"host": "node1", "cwd": f"/work/app-1/{executor}", "python": "/venv/bin/python",
           "log_url": url, "container": None, "file": file, "version": version,
           "executor": executor}
    if error:
        out["error"] = error
    return out


def test_where_a_module_comes_from():
    assert zip_of(f"/w/app-1/0/{ZIP}/reviewlake/__init__.py") == f"/w/app-1/0/{ZIP}"
    assert zip_of("/work/main/lib/reviewlake/__init__.py") is None
    assert zip_of(None) is None
    assert executor_id(report("x", executor="7")) == "7"
    assert executor_id({"log_url": None, "container": "container_01", "cwd": "/c"}) == "container_01"
    assert executor_id({"log_url": None, "container": None, "cwd": "/c"}) == "/c"


def test_the_shipped_zip_passes_and_anything_else_is_one_line():
    shipped = [report(f"/w/app-1/{e}/{ZIP}/reviewlake/__init__.py", executor=e) for e in "01"]
    assert judge(shipped, [ZIP]) is None
    installed = shipped[:1] + [report("/work/main/lib/reviewlake/__init__.py", executor="1")]
    problem = judge(installed, [ZIP])
    assert problem.startswith("executor 1 on node1 imports reviewlake from /work/main/lib/")
    assert "not from the shipped reviewlake-0.1.0.zip" in problem and "\n" not in problem
    # nothing shipped (an installed wheel, as on EMR's bootstrap): the version must match
    assert judge(installed, []) is None
    old = [report("/usr/lib/python3/site-packages/reviewlake/__init__.py", version="0.0.9")]
    assert "imports reviewlake 0.0.9" in judge(old, [])
    missing = [report(None, version=None, error="ModuleNotFoundError: No module named 'x'")]
    assert "cannot import reviewlake (ModuleNotFoundError" in judge(missing, [ZIP])


def test_check_executors_raises_a_user_error(monkeypatch):
    from reviewlake import executors

    monkeypatch.setattr(executors, "probe_executors", lambda spark: [
        dict(report("/work/main/lib/reviewlake/__init__.py"), executor="0")])
    monkeypatch.setattr(executors, "shipped_zips", lambda spark: [ZIP])
    with pytest.raises(UserError, match="^executor check failed: executor 0 on node1"):
        executors.check_executors(object())


def test_the_console_script_ships_the_zip_to_a_cluster():
    """reviewlake <stage> --master spark://... (no spark-submit) ships what spark-submit.sh
    ships: the checkout's packaged library; a profile naming its own py-files keeps them."""
    import zipfile

    from reviewlake.session import REPO_ROOT, cluster_py_files

    shipped = cluster_py_files({})
    assert shipped == str(REPO_ROOT / "build" / "reviewlake-0.1.0.zip")
    assert "reviewlake/train/launch.py" in zipfile.ZipFile(shipped).namelist()
    assert cluster_py_files({"spark.submit.pyFiles": "s3://b/x.zip"}) is None
