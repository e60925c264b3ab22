"""The method notebooks in examples/ run top to bottom in quick mode, and are committed clean.

Each notebook runs in a fresh IPython kernel of this interpreter (`sys.executable`, from a
kernel spec written for the test, so no installed kernel is needed) with
`KERAS_DEEPAD_QUICK=1`. Together they take about 100 s on 2 CPU cores.
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from ipykernel.kernelspec import write_kernel_spec  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

from keras_deepad.data.images import (  # noqa: E402
    DEBIAN_FASHION_MNIST_DIR,
    FASHION_MNIST_ENV_VAR,
    find_fashion_mnist_files,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(path.name for path in EXAMPLES.glob("*.ipynb"))
FASHION_NOTEBOOKS = {"01_generative_autoencoders.ipynb"}
CELL_TIMEOUT_S = 180


def _fashion_mnist_folder():
    """Where the loader looks first (a set KERAS_DEEPAD_FASHION_MNIST is the only place)."""
    return os.environ.get(FASHION_MNIST_ENV_VAR) or DEBIAN_FASHION_MNIST_DIR


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", EXAMPLES / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory):
    """A kernel spec manager whose `python3` kernel is this interpreter."""
    folder = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(folder / "python3")
    manager = KernelSpecManager(kernel_dirs=[str(folder)])
    assert manager.get_kernel_spec("python3").argv[0] == sys.executable
    return manager


def test_the_five_notebooks_exist():
    assert NOTEBOOKS == [
        "01_generative_autoencoders.ipynb",
        "02_deep_svdd.ipynb",
        "03_ocnn.ipynb",
        "04_robust_training.ipynb",
        "05_export_and_edge.ipynb",
    ]


def test_notebooks_are_generated_and_committed_without_outputs():
    generator = _generator()
    built = generator.build_notebooks()
    assert sorted(built) == NOTEBOOKS
    for name, notebook in built.items():
        text = (EXAMPLES / name).read_text(encoding="utf-8")
        assert text == generator.render(notebook), (
            f"{name} differs from examples/make_notebooks.py: run python examples/make_notebooks.py"
        )
        committed = nbformat.reads(text, as_version=4)
        nbformat.validate(committed)
        code = [cell for cell in committed.cells if cell.cell_type == "code"]
        assert all(not cell.outputs and cell.execution_count is None for cell in code)
        assert committed.cells[0].cell_type == "markdown"
        assert 'os.environ.get("KERAS_DEEPAD_QUICK", "0") == "1"' in code[0].source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_quick_mode(name, kernel_specs, tmp_path, monkeypatch):
    folder = _fashion_mnist_folder()
    if name in FASHION_NOTEBOOKS and find_fashion_mnist_files(folder) is None:
        pytest.skip(
            f"Fashion-MNIST not installed in {folder} (apt-get install dataset-fashion-mnist)"
        )
    # The kernel inherits this environment.
    monkeypatch.setenv("KERAS_DEEPAD_QUICK", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        km=KernelManager(kernel_name="python3", kernel_spec_manager=kernel_specs),
        timeout=CELL_TIMEOUT_S,
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    # Raises CellExecutionError at the first failing cell; shuts the kernel down and closes
    # its channels in any case.
    client.execute(cleanup_kc=True)

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [out for cell in code for out in cell.outputs if out.output_type == "error"]
    assert not errors
    assert all(cell.execution_count is not None for cell in code)
    # The keras_deepad.plot figures reach the notebook as images.
    images = [out for cell in code for out in cell.outputs if "image/png" in out.get("data", {})]
    assert images
