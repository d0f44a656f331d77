"""The Slicer extension shell, checked without Slicer.

The module file imports slicer and qt, so it cannot be imported here. Its pure helpers (the
JSON-line protocol, command building, output naming, dependency checks) are compiled straight
from USGen.py's syntax tree, leaving out the Slicer imports and the four Slicer classes; any
helper that reached for slicer or qt would fail here.
"""

import ast
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "USGenExtension" / "USGen"
MODULE_PY = MODULE_DIR / "USGen.py"
MODULE_UI = MODULE_DIR / "Resources" / "UI" / "USGen.ui"
SLICER_ONLY = {"slicer", "qt", "ctk", "vtk"}
MODULE_CLASSES = {"USGen", "USGenWidget", "USGenLogic", "USGenTest"}


def _import_roots(node):
    if isinstance(node, ast.Import):
        return {alias.name.split(".")[0] for alias in node.names}
    if isinstance(node, ast.ImportFrom) and node.level == 0:
        return {node.module.split(".")[0]}
    return set()


def _pure_nodes():
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    return [node for node in tree.body
            if not _import_roots(node) & SLICER_ONLY
            and not (isinstance(node, ast.ClassDef) and node.name in MODULE_CLASSES)]


@pytest.fixture(scope="module")
def helpers():
    sys.path.insert(0, str(MODULE_DIR))  # USGen.py imports USGenPlan from its folder, as in Slicer
    module = types.ModuleType("USGen_pure_helpers")
    module.__file__ = str(MODULE_PY)  # REQUIREMENTS_FILE sits beside the module
    sys.modules[module.__name__] = module  # dataclasses look their module up
    code = compile(ast.Module(body=_pure_nodes(), type_ignores=[]), str(MODULE_PY), "exec")
    exec(code, module.__dict__)
    yield module
    del sys.modules[module.__name__]


def _cmake_commands(path):
    """(command, arguments) pairs of a simple CMake file: parentheses may appear inside quoted
    arguments ("Name (Organisation)"), comments run from an unquoted # to the end of the line."""
    text = path.read_text(encoding="utf-8")
    commands, i = [], 0
    for match in re.finditer(r"(\w+)\s*\(", text):
        if match.start() < i or text.rfind("#", text.rfind("\n", 0, match.start()) + 1, match.start()) >= 0:
            continue
        j, quoted = match.end(), False
        while j < len(text) and (quoted or text[j] != ")"):
            quoted = not quoted if text[j] == '"' else quoted
            j += 1
        args = re.sub(r'#[^\n"]*', "", text[match.end():j])  # comments after arguments
        commands.append((match.group(1).lower(), shlex.split(args)))
        i = j + 1
    return commands


def _scripted_module_files(cmake_file):
    """The SCRIPTS and RESOURCES given to slicerMacroBuildScriptedModule, variables expanded."""
    commands = _cmake_commands(cmake_file)
    variables = {args[0]: args[1:] for name, args in commands if name == "set"}

    def expand(tokens):  # variables that set() does not define (globs) stay as they are
        out = []
        for token in tokens:
            match = re.fullmatch(r"\$\{(\w+)\}", token)
            if match and match.group(1) in variables:
                out += expand(variables[match.group(1)])
            else:
                out.append(re.sub(r"\$\{(\w+)\}", lambda m: " ".join(variables.get(m.group(1), [m.group(0)])), token))
        return out

    (args,) = [args for name, args in commands if name == "slicermacrobuildscriptedmodule"]
    keywords = {"NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS", "WITH_SUBDIR", "VERBOSE"}
    groups, current = {}, None
    for token in args:
        if token in keywords:
            current = token
            groups.setdefault(token, [])
        else:
            groups[current].append(token)
    return {key: expand(value) for key, value in groups.items()}


# --- (a) the .ui file -------------------------------------------------------------------------


def test_ui_parses_and_has_every_widget_the_module_uses(helpers):
    root = ET.parse(MODULE_UI).getroot()
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget"
    widgets = {w.get("name"): w.get("class") for w in root.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_PY.read_text(encoding="utf-8")))
    assert used, "USGen.py uses no self.ui widgets"
    assert used <= widgets.keys(), f"missing in USGen.ui: {sorted(used - widgets.keys())}"
    # Widgets reached by name (getattr(self.ui, section + suffix)): every section has them all.
    expected = {"outputFolderLineEdit": "ctkPathLineEdit", "loadInputPathLineEdit": "ctkPathLineEdit",
                "simulateVolumeSelector": "qMRMLNodeComboBox", "simulatePoseSelector": "qMRMLNodeComboBox",
                "cfdInputSelector": "qMRMLNodeComboBox", "enhanceInputSelector": "qMRMLNodeComboBox"}
    classes = {"CollapsibleButton": "ctkCollapsibleButton", "ApplyButton": "QPushButton", "CancelButton": "QPushButton",
               "ProgressBar": "QProgressBar", "StatusLabel": "QLabel", "DeviceComboBox": "QComboBox"}
    for section in helpers.SECTIONS:
        expected.update({section + suffix: classes[suffix] for suffix in helpers.SECTION_WIDGETS})
    expected.update({section + "DeviceComboBox": "QComboBox" for section in helpers.DEVICE_SECTIONS})
    assert {name: widgets.get(name) for name in expected} == expected
    titles = [w.find("property[@name='text']/string").text for w in root.iter("widget")
              if w.get("class") == "ctkCollapsibleButton"]
    assert titles == ["Load", "Simulate", "CFD removal", "Enhance", "Echo", "Training data"]
    # Node selectors get the scene from the panel (Designer connection), as in Slicer's templates.
    connected = {c.findtext("receiver") for c in root.iter("connection") if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert connected == {name for name, cls in widgets.items() if cls == "qMRMLNodeComboBox"}
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    custom = {cls for cls in widgets.values() if not cls.startswith("Q")}
    assert custom <= declared, f"custom widgets not declared: {custom - declared}"


# --- (b) the module file ----------------------------------------------------------------------


def test_module_defines_the_four_slicer_classes():
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    bases = {node.name: [ast.unparse(b) for b in node.bases] for node in tree.body if isinstance(node, ast.ClassDef)}
    assert bases["USGen"] == ["ScriptedLoadableModule"]
    assert bases["USGenWidget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert bases["USGenLogic"] == ["ScriptedLoadableModuleLogic"]
    assert bases["USGenTest"] == ["ScriptedLoadableModuleTest"]


def test_module_resources_it_loads_are_installed():
    text = MODULE_PY.read_text(encoding="utf-8")
    loaded = {"Resources/" + name for name in re.findall(r"resourcePath\(\"([^\"]+)\"\)", text)}
    assert loaded == {"Resources/UI/USGen.ui"}
    loaded.add("Resources/requirements.txt")  # REQUIREMENTS_FILE
    assert loaded <= set(_scripted_module_files(MODULE_DIR / "CMakeLists.txt")["RESOURCES"])


def test_pure_helpers_do_not_touch_slicer_or_qt():
    names = {n.id for node in _pure_nodes() for n in ast.walk(node) if isinstance(n, ast.Name)}
    assert not names & (SLICER_ONLY | {"_", "translate"})


# --- (c) the pure helpers ---------------------------------------------------------------------


def test_usgen_arguments_run_the_package_with_json_progress(helpers):
    args = helpers.usgenArguments("convert", "/data/my cine.dcm", Path("/out/my cine.seq.nrrd"))
    assert args == ["-m", "USGenLib", "convert", "/data/my cine.dcm", "/out/my cine.seq.nrrd", "--progress-json"]
    assert helpers.usgenArguments("cfd remove", "a", "b")[:4] == ["-m", "USGenLib", "cfd", "remove"]


def test_parse_progress_line(helpers):
    assert helpers.parseProgressLine(b'{"progress": 0.4, "stage": "convert", "message": "frame 12/30"}\n') == {
        "progress": 0.4, "stage": "convert", "message": "frame 12/30"}
    assert helpers.parseProgressLine('  {"error": "x.dcm: not DICOM"}\r') == {"error": "x.dcm: not DICOM"}
    for stray in (b"", b"Warning: something", b"{not json", b"[1, 2]", b"42"):
        assert helpers.parseProgressLine(stray) is None


def test_job_output_success_with_chunks_split_anywhere(helpers):
    stream = ('{"progress": 0.5, "stage": "read", "message": "caf\u00e9 15/30"}\n'
              "a library printed this\n"
              '{"progress": 1.0, "stage": "done", "outputs": ["/out/a.seq.nrrd", "/out/b.seg.nrrd"]}').encode()
    for cut in range(1, len(stream)):  # every split point, including inside the UTF-8 "é"
        job = helpers.JobOutput()
        messages = job.feedStdout(stream[:cut]) + job.feedStdout(stream[cut:])
        result = job.finish(0)
        assert [m["stage"] for m in messages] == ["read"]  # the last line has no newline yet
        assert messages[0]["message"] == "caf\u00e9 15/30"
        assert result.succeeded and result.outputs == ["/out/a.seq.nrrd", "/out/b.seg.nrrd"]
        assert result.details == "a library printed this"


def test_job_output_bad_input_exit_code_2(helpers):
    job = helpers.JobOutput()
    job.feedStdout(b'{"progress": 0.1, "stage": "read"}\n{"error": "/d/x.dcm: not a DICOM file"}\n')
    job.feedStderr(b"/d/x.dcm: not a DICOM file\n")
    result = job.finish(2)
    assert not result.succeeded and not result.cancelled
    assert result.error == "The input cannot be used: /d/x.dcm: not a DICOM file"
    assert result.details == "/d/x.dcm: not a DICOM file"


def test_job_output_other_failures(helpers):
    job = helpers.JobOutput()
    job.feedStderr(b"Traceback (most recent call last):\n  ...\nMemoryError\n")
    assert job.finish(1).error == "usgen failed (exit code 1): MemoryError"

    assert helpers.JobOutput().finish(9, crashed=True).error == "usgen stopped unexpectedly: no message"
    # exit 0 without the final "done" line is not a success: nothing says what was written
    assert "without reporting" in helpers.JobOutput().finish(0).error


def test_job_output_cancelled(helpers):
    job = helpers.JobOutput()
    job.feedStdout(b'{"progress": 0.2, "stage": "convert"}\n')
    result = job.finish(9, crashed=True, cancelled=True)
    assert result.cancelled and not result.error and not result.succeeded


def test_converted_path(helpers):
    assert helpers.convertedPath("/d/Cine.DCM", "/o") == os.path.join("/o", "Cine.seq.nrrd")
    assert helpers.convertedPath("/d/clip.mp4", "/o") == os.path.join("/o", "clip.seq.nrrd")
    assert helpers.convertedPath("/d/1.2.840.113619.5", "/o") == os.path.join("/o", "1.2.840.113619.5.seq.nrrd")
    assert helpers.convertedPath("/d/x.seq.nrrd", "/o") == os.path.join("/o", "x.seq.nrrd")
    # converting a sequence into its own folder must not overwrite it
    assert helpers.convertedPath("/d/x.seq.nrrd", "/d") == os.path.join("/d", "x-converted.seq.nrrd")


def test_playback_fps(helpers):
    assert helpers.playbackFps([0.0, 0.04, 0.08, 0.12]) == pytest.approx(25.0)
    assert helpers.playbackFps([0.5]) is None
    assert helpers.playbackFps([1.0, 1.0]) is None


def test_missing_requirements(helpers):
    installed = {"torch": "2.13.0+cpu", "monai": "1.3.2", "pydicom": "3.1.0.dev0"}
    missing = helpers.missingRequirements(["torch>=2.2,<3", "monai>=1.4", "pydicom>=3.0", "tqdm>=4.60"],
                                          installed.get)
    assert missing == ["monai>=1.4", "tqdm>=4.60"]
    assert helpers.missingRequirements(helpers.readRequirements(helpers.REQUIREMENTS_FILE)) == []  # this venv has them all


def test_requirements_file_equals_the_package_dependencies(helpers):
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    listed = helpers.readRequirements(helpers.REQUIREMENTS_FILE)
    assert Path(helpers.REQUIREMENTS_FILE) == MODULE_DIR / "Resources" / "requirements.txt"
    provided = {name.lower() for name in helpers.SLICER_PROVIDED}
    assert sorted(listed) == sorted(s for s in declared if helpers.USGenPlan.requirementName(s) not in provided)
    assert {helpers.USGenPlan.requirementName(s) for s in declared} >= provided


class _FakeSlicer:
    """Just what ensurePackages touches of the slicer module, recording every install."""

    def __init__(self, testing, packaging=True, confirm=True):
        calls = self.calls = []
        self.app = types.SimpleNamespace(testingEnabled=lambda: testing)
        self.util = types.SimpleNamespace(
            confirmOkCancelDisplay=lambda *a, **k: calls.append(("confirm", a[0][:20])) or confirm,
            pip_install=lambda reqs, **k: calls.append(("pip_install", list(reqs))))
        if packaging:
            self.packaging = types.SimpleNamespace(
                pip_ensure=lambda reqs, **k: calls.append(("pip_ensure", list(reqs), k.get("skip_in_testing"))))


class _FakeTorchUtils:
    def __init__(self):
        self.calls = []

    def installTorch(self, **kwargs):
        self.calls.append(kwargs)


def test_no_pip_install_in_testing_mode(helpers):
    absent = lambda name: None  # nothing installed
    fake, torch = _FakeSlicer(testing=True), _FakeTorchUtils()
    assert helpers.ensurePackages(fake, ["torch>=2.2,<3", "monai>=1.4"], absent, torchUtils=torch) is False
    assert fake.calls == [] and torch.calls == []


def test_packages_installed_with_consent(helpers):
    absent = lambda name: None
    # torch through PyTorch Utils, the others through pip_ensure (which asks, and skips in testing mode)
    fake, torch = _FakeSlicer(testing=False), _FakeTorchUtils()
    assert helpers.ensurePackages(fake, ["torch>=2.2,<3", "monai>=1.4"], absent, torchUtils=torch)
    assert torch.calls == [{"askConfirmation": False, "torchVersionRequirement": ">=2.2,<3"}]
    assert fake.calls[0][0] == "confirm" and fake.calls[1] == ("pip_ensure", ["monai>=1.4"], True)
    # a Slicer without slicer.packaging: pip_install only after OK, nothing after Cancel
    fake = _FakeSlicer(testing=False, packaging=False)
    assert helpers.ensurePackages(fake, ["torch>=2.2,<3", "monai>=1.4"], absent)
    assert [c[0] for c in fake.calls] == ["confirm", "pip_install"] and fake.calls[1][1] == ["torch>=2.2,<3", "monai>=1.4"]
    fake = _FakeSlicer(testing=False, packaging=False, confirm=False)
    assert helpers.ensurePackages(fake, ["monai>=1.4"], absent) is False
    assert [c[0] for c in fake.calls] == ["confirm"]
    # nothing missing: nothing asked
    fake = _FakeSlicer(testing=False)
    assert helpers.ensurePackages(fake, ["monai>=1.4"], lambda name: "1.5.0") and fake.calls == []


def test_every_install_goes_through_ensure_packages():
    """Static check: pip is reached only inside ensurePackages, which returns first in testing mode."""
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    callers = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
               for call in ast.walk(node) if isinstance(call, ast.Attribute)
               and call.attr in ("pip_install", "pip_ensure", "installTorch")}
    assert callers == {"ensurePackages"}
    ensure = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "ensurePackages")
    first_install = min(n.lineno for n in ast.walk(ensure) if isinstance(n, ast.Attribute)
                        and n.attr in ("pip_install", "pip_ensure", "installTorch"))
    testing_return = min(n.lineno for n in ast.walk(ensure) if isinstance(n, ast.If) and "testingEnabled" in ast.unparse(n.test))
    assert testing_return < first_install


def test_minimum_slicer_version_is_stated(helpers):
    assert helpers.MIN_SLICER_VERSION == (5, 10)
    assert helpers.slicerVersionSupported(5, 10) and helpers.slicerVersionSupported(6, 0)
    assert not helpers.slicerVersionSupported(5, 8)
    for path in (ROOT / "README.md", ROOT / "docs" / "slicer.md"):
        assert "Slicer 5.10" in path.read_text(encoding="utf-8"), path
    assert "Slicer 5.10 or later" in MODULE_PY.read_text(encoding="utf-8")  # the module's help text


def test_usgenlib_folder_in_source_and_installed_layouts(helpers, tmp_path):
    assert Path(helpers.usgenLibFolder(str(MODULE_DIR))) == ROOT
    installed = tmp_path / "lib" / "Slicer-5.9" / "qt-scripted-modules"
    (installed / "USGenLib").mkdir(parents=True)
    (installed / "USGenLib" / "__init__.py").write_text("")
    assert helpers.usgenLibFolder(str(installed)) == str(installed)
    assert helpers.usgenLibFolder(str(tmp_path)) is None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="checks process states through /proc")
def test_kill_process_tree_kills_the_grandchild(helpers):
    # Like PythonSlicer: a launcher process whose child does the work.
    launcher = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
         "print(child.pid, flush=True)\nchild.wait()"],
        stdout=subprocess.PIPE, text=True)
    child = int(launcher.stdout.readline())

    def alive(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False

    assert alive(child)
    helpers.killProcessTree(launcher.pid)
    launcher.wait(timeout=10)
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
    helpers.killProcessTree(0)  # must not signal this process group


@pytest.mark.parametrize("child_code,graceful", [
    # like usgen: SIGTERM raises, the cleanup in `finally` runs
    ("import signal, sys, time\n"
     "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
     "try:\n    time.sleep(60)\nfinally:\n    open(sys.argv[1], 'w').write('cleaned')", True),
    # a job that ignores SIGTERM is killed after the grace period
    ("import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)", False),
], ids=["cleans-up", "ignores-sigterm"])
def test_stop_process_tree_terminates_then_kills(helpers, tmp_path, child_code, graceful):
    marker = tmp_path / "cleaned"
    launcher = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         f"child = subprocess.Popen([sys.executable, '-c', {child_code!r}, {str(marker)!r}])\n"
         "print(child.pid, flush=True)\nchild.wait()"],
        stdout=subprocess.PIPE, text=True)
    child = int(launcher.stdout.readline())
    time.sleep(0.5)  # the child's handler is in place
    start = time.monotonic()
    assert helpers.stopProcessTree(launcher.pid, graceSeconds=1.0) is graceful
    launcher.wait(timeout=10)
    deadline = time.monotonic() + 5  # SIGKILL takes effect a moment later
    while helpers.processRuns(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not helpers.processRuns(child)
    assert marker.exists() is graceful
    assert time.monotonic() - start < (1.0 if graceful else 6.0)


# --- the `usgen` side of the protocol, when the CLI exists --------------------------------------


needs_cli = pytest.mark.skipif(not (ROOT / "USGenLib" / "cli.py").exists(),
                               reason="the usgen command (USGenLib/cli.py) is not written yet")


def _run_usgen(helpers, *args):
    env = dict(os.environ, PYTHONPATH=helpers.usgenLibFolder(str(MODULE_DIR)))
    proc = subprocess.run([sys.executable, *helpers.usgenArguments(*args)], capture_output=True, env=env,
                          timeout=600, cwd=ROOT)
    job = helpers.JobOutput()
    progress = job.feedStdout(proc.stdout)
    job.feedStderr(proc.stderr)
    return proc, progress, job.finish(proc.returncode)


@needs_cli
def test_usgen_convert_speaks_the_protocol(helpers, tmp_path):
    pydicom_data = pytest.importorskip("pydicom.data")
    nrrd = pytest.importorskip("nrrd")
    cine = pydicom_data.get_testdata_file("examples_ybr_color.dcm")
    output = helpers.convertedPath(cine, str(tmp_path))
    proc, progress, result = _run_usgen(helpers, "convert", cine, output)
    assert result.succeeded, f"{result.error}\n{result.details}"
    assert [os.path.realpath(path) for path in result.outputs] == [os.path.realpath(output)]
    assert progress[-1]["stage"] == "done" and progress[-1]["progress"] == 1.0
    assert all(0.0 <= m["progress"] <= 1.0 for m in progress)
    assert nrrd.read_header(output)["sizes"][-1] == 30


@needs_cli
def test_usgen_bad_input_speaks_the_protocol(helpers, tmp_path):
    missing = tmp_path / "no-such-cine.dcm"
    output = helpers.convertedPath(str(missing), str(tmp_path))
    proc, progress, result = _run_usgen(helpers, "convert", missing, output)
    assert proc.returncode == 2
    assert result.error.startswith("The input cannot be used: ") and str(missing) in result.error
    assert str(missing) in proc.stderr.decode()
    assert not os.path.exists(output)


# --- (d) the library stays free of Slicer ------------------------------------------------------


def test_usgenlib_imports_nothing_from_slicer():
    files = sorted((ROOT / "USGenLib").rglob("*.py"))
    assert files
    offenders = [f"{path.relative_to(ROOT)}:{node.lineno} imports {sorted(_import_roots(node) & SLICER_ONLY)}"
                 for path in files
                 for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path)))
                 if _import_roots(node) & SLICER_ONLY]
    assert not offenders, "\n".join(offenders)


# --- (e) the CMake files ----------------------------------------------------------------------


def test_extension_cmakelists():
    commands = _cmake_commands(ROOT / "CMakeLists.txt")
    names = [name for name, _ in commands]
    settings = {args[0]: args[1:] for name, args in commands if name == "set"}
    assert ("project", ["USGen"]) in commands
    assert settings["EXTENSION_CATEGORY"] == ["Ultrasound"]
    contributors = settings["EXTENSION_CONTRIBUTORS"][0].split(", ")
    assert all(re.fullmatch(r"[^()]+ \([^()]+\)", c) for c in contributors), contributors  # "Name (Organisation)"
    assert settings["EXTENSION_DEPENDS"] == ["PyTorch"]
    screenshot = settings["EXTENSION_SCREENSHOTURLS"][0]
    assert (ROOT / screenshot.split("/main/", 1)[1]).is_file(), screenshot
    assert "Slicer 5.10" in settings["EXTENSION_DESCRIPTION"][0]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache License")
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert settings[key] and settings[key][0], key
    icon = settings["EXTENSION_ICONURL"][0]
    assert (ROOT / icon.split("/main/", 1)[1]).is_file(), icon
    assert ("find_package", ["Slicer", "REQUIRED"]) in commands
    assert ("include", ["${Slicer_USE_FILE}"]) in commands
    assert names.index("find_package") < names.index("add_subdirectory")
    subdirs = [args[0] for name, args in commands if name == "add_subdirectory"]
    assert subdirs == ["USGenLib", "USGenExtension/USGen"]
    for subdir in subdirs:
        assert (ROOT / subdir / "CMakeLists.txt").is_file(), subdir
    assert commands[-2:] == [("include", ["${Slicer_EXTENSION_GENERATE_CONFIG}"]),
                             ("include", ["${Slicer_EXTENSION_CPACK}"])]


def test_bundled_weights_are_installed_where_the_jobs_look():
    """Installed, USGenLib sits in qt-scripted-modules/; the jobs look for weights two folders above
    USGenLib/train/weights.py, so the extension puts every weight file and card under
    qt-scripted-modules/Resources/weights/ (build tree and install tree alike)."""
    from USGenLib.train import weights

    assert weights.RESOURCES == ROOT / "Resources" / "weights"  # parents[2] of USGenLib/train/weights.py
    commands = _cmake_commands(ROOT / "CMakeLists.txt")
    (glob,) = [args for name, args in commands if name == "file" and "USGen_WEIGHT_FILES" in args]
    endings = {token.rsplit("*", 1)[1] for token in glob if token.startswith("${CMAKE_CURRENT_SOURCE_DIR}/Resources/weights/*")}
    shipped = [p for p in (ROOT / "Resources" / "weights").rglob("*") if p.is_file()]
    assert shipped and all(p.suffix in endings for p in shipped), sorted(p.name for p in shipped)
    (install,) = [args for name, args in commands if name == "install" and "Resources/weights/${weight_file}" in args]
    assert install[install.index("DESTINATION") + 1] == "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/Resources/weights/${weight_dir}"
    (copy,) = [args for name, args in commands if name == "configure_file"]
    assert copy[1] == "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/Resources/weights/${weight_file}"
    names = [name for name, _ in commands]
    assert names.index("foreach") > names.index("add_subdirectory")


def test_module_cmakelists_lists_existing_files():
    files = _scripted_module_files(MODULE_DIR / "CMakeLists.txt")
    assert files["NAME"] == ["USGen"]
    assert files["SCRIPTS"] == ["USGen.py", "USGenPlan.py"]
    assert set(files["RESOURCES"]) == {"Resources/Icons/USGen.png", "Resources/UI/USGen.ui", "Resources/requirements.txt"}
    assert "WITH_GENERIC_TESTS" in files
    for name in files["SCRIPTS"] + files["RESOURCES"]:
        assert (MODULE_DIR / name).is_file(), name


def test_usgenlib_cmakelists_installs_every_python_file_with_subdir():
    cmake = ROOT / "USGenLib" / "CMakeLists.txt"
    commands = _cmake_commands(cmake)
    (glob,) = [args for name, args in commands if name == "file" and args[0] == "GLOB_RECURSE"]
    assert glob[glob.index("RELATIVE") + 1] == "${CMAKE_CURRENT_SOURCE_DIR}"
    patterns = [token for token in glob[2:] if "*" in token]
    assert patterns in (["*.py"], ["${CMAKE_CURRENT_SOURCE_DIR}/*.py"])
    files = _scripted_module_files(cmake)
    assert files["NAME"] == ["USGenLib"]
    assert files["SCRIPTS"] == [f"${{{glob[1]}}}"]
    assert "WITH_SUBDIR" in files  # installs into qt-scripted-modules/USGenLib/, beside USGen.py


def test_usgenlib_holds_only_python_files():
    # The extension installs USGenLib's .py files only (as pip does without package-data);
    # a data file here would be missing from both installs.
    others = [p.relative_to(ROOT).as_posix() for p in (ROOT / "USGenLib").rglob("*")
              if p.is_file() and p.suffix not in (".py", ".pyc") and p.name != "CMakeLists.txt"]
    assert not others, f"not installed with the extension or by pip: {others}"


def test_plan_module_imports_only_the_standard_library():
    # USGenPlan runs inside Slicer before USGenLib's packages are installed, and in pytest without Slicer.
    tree = ast.parse((MODULE_DIR / "USGenPlan.py").read_text(encoding="utf-8"))
    roots = set().union(*(_import_roots(node) for node in ast.walk(tree)))
    assert roots <= set(sys.stdlib_module_names) | {"__future__"}, roots
