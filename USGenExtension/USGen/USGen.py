"""USGen: the Slicer front end of USGenLib.

The module holds no science. Every job is the `usgen` command, run as a background process
(``PythonSlicer -m USGenLib <job> ... --progress-json``): the GUI never freezes, Cancel stops the
job (SIGTERM, then SIGKILL after 2 s), progress arrives as one JSON object per stdout line, and the
output files are loaded with Slicer's own readers. See docs/slicer.md.
"""

import importlib.metadata
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from packaging.requirements import Requirement

import qt
import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin

#
# Pure helpers. They use neither slicer nor qt, so Testing/test_slicer_module.py runs them
# without Slicer.
#

# Every package USGenLib needs, as in pyproject.toml (a test keeps the two equal), except
# SLICER_PROVIDED: Slicer ships those and replacing them under it would break Slicer.
REQUIREMENTS = [
    "torch>=2.2,<3",
    "monai>=1.4",
    "scipy>=1.10",
    "pydicom>=3.0",
    "pylibjpeg>=2.0",
    "pylibjpeg-openjpeg>=2.3",
    "pylibjpeg-rle>=2.0",
    "python-gdcm>=3.0.22",
    "pynrrd>=1.0",
    "slicerio>=1.0",
    "imageio>=2.31",
    "imageio-ffmpeg>=0.5",
    "pillow>=10",
    "safetensors>=0.4",
    "tqdm>=4.60",
]
SLICER_PROVIDED = ["numpy", "SimpleITK"]

# Endings dropped when naming an output after its input. Other dots stay: DICOM files are
# often named by UID ("1.2.840.113619.2.55").
INPUT_ENDINGS = (".seq.nrrd", ".nrrd", ".dcm", ".avi", ".mp4")

# Cancel asks a job to stop (SIGTERM) and waits this long for its cleanup before killing it.
TERMINATE_GRACE_S = 2.0


def installedVersion(distribution):
    """Version string of an installed distribution, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def missingRequirements(requirements, versionOf=installedVersion):
    """The requirements whose package is absent or installed at a version outside their range."""
    missing = []
    for spec in requirements:
        requirement = Requirement(spec)
        version = versionOf(requirement.name)
        # prereleases=True: Slicer bundles development builds of some packages.
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            missing.append(spec)
    return missing


def usgenArguments(job, *args):
    """Arguments for Slicer's Python that run ``usgen <job> <args> --progress-json``."""
    return ["-m", "USGenLib", job, *(str(arg) for arg in args), "--progress-json"]


def usgenLibFolder(moduleDir):
    """The folder to put on PYTHONPATH so that USGenLib imports, or None.

    Installed (and in a build tree) USGenLib sits beside USGen.py in qt-scripted-modules/;
    in the source tree it is at the root, two levels above USGenExtension/USGen/.
    """
    for folder in (moduleDir, os.path.dirname(os.path.dirname(moduleDir))):
        if os.path.isfile(os.path.join(folder, "USGenLib", "__init__.py")):
            return folder
    return None


def convertedPath(inputPath, outputDir):
    """Where ``usgen convert`` writes: OUTDIR/<input name>.seq.nrrd, never over the input."""
    name = os.path.basename(inputPath)
    for ending in INPUT_ENDINGS:
        if name.lower().endswith(ending):
            name = name[: -len(ending)]
            break
    path = os.path.join(outputDir, name + ".seq.nrrd")
    if os.path.abspath(path) == os.path.abspath(inputPath):
        path = os.path.join(outputDir, name + "-converted.seq.nrrd")
    return path


def outputKind(path):
    """Which Slicer reader loads an output: "sequence", "segmentation", "volume", or None
    for files that are not loaded (report.json, videos, pictures)."""
    name = path.lower()
    if name.endswith((".seq.nrrd", ".seq.nhdr")):
        return "sequence"
    if name.endswith(".seg.nrrd"):
        return "segmentation"
    if name.endswith((".nrrd", ".nhdr", ".nii", ".nii.gz")):
        return "volume"
    return None


def playbackFps(times):
    """Frames per second of a cine with these increasing frame times (s); None if no rate."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])


def parseProgressLine(line):
    """One stdout line of ``usgen ... --progress-json`` as a dict, or None when it is not a
    protocol line (libraries may print stray text on stdout)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None


def failureMessage(exitCode, crashed, error, details):
    """One line for the user: what usgen said, framed by how it ended (exit code 2: bad input)."""
    lines = details.strip().splitlines()
    said = error or (lines[-1] if lines else "no message")
    if crashed:
        return f"usgen stopped unexpectedly: {said}"
    if exitCode == 2:
        return f"The input cannot be used: {said}"
    return f"usgen failed (exit code {exitCode}): {said}"


@dataclass
class JobResult:
    """How a usgen job ended: succeeded (with its outputs), failed (error) or cancelled."""

    outputs: list = field(default_factory=list)
    error: str = ""
    details: str = ""  # stderr and stray stdout, for the error dialog's details
    cancelled: bool = False

    @property
    def succeeded(self):
        return not self.error and not self.cancelled


class JobOutput:
    """Collects what a usgen job prints. Stdout comes in chunks that may split lines (and
    UTF-8 characters), so bytes are buffered until a line is complete."""

    def __init__(self):
        self._pending = b""
        self._log = []
        self.outputs = None
        self.error = ""

    def feedStdout(self, data):
        """Add a stdout chunk; return the progress messages of the lines it completed."""
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        return self._handle(lines)

    def feedStderr(self, data):
        self._log.append(data.decode("utf-8", errors="replace"))

    def finish(self, exitCode, crashed=False, cancelled=False):
        """The result, once the process has ended with exitCode."""
        self._handle([self._pending])  # the last line may lack its newline
        self._pending = b""
        details = "".join(self._log).strip()
        if cancelled:
            return JobResult(details=details, cancelled=True)
        if exitCode == 0 and not crashed:
            if self.outputs is None:
                return JobResult(error="usgen finished without reporting its output files", details=details)
            return JobResult(outputs=self.outputs, details=details)
        return JobResult(error=failureMessage(exitCode, crashed, self.error, details), details=details)

    def _handle(self, lines):
        progress = []
        for line in lines:
            message = parseProgressLine(line)
            if message is None:
                if line.strip():
                    self._log.append(line.decode("utf-8", errors="replace").rstrip() + "\n")
                continue
            if "error" in message:
                self.error = str(message["error"])
            if message.get("stage") == "done":
                self.outputs = [str(path) for path in message.get("outputs", [])]
            if "progress" in message:
                progress.append(message)
        return progress


def descendants(pid):
    """The processes below ``pid``, children before grandchildren (POSIX, through pgrep)."""
    try:
        children = [int(c) for c in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                   text=True).stdout.split()]
    except FileNotFoundError:  # without pgrep only the process itself can be found
        return []
    return children + [grandchild for child in children for grandchild in descendants(child)]


def processRuns(pid):
    """Whether ``pid`` runs; a zombie (ended, not yet reaped) does not, where /proc tells."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or its number reused by another user
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # gone meanwhile; or no /proc (macOS), where os.kill's answer stands
        return not os.path.isdir("/proc")


def stopProcessTree(pid, graceSeconds=TERMINATE_GRACE_S):
    """Stop a job and every process below it: SIGTERM to each (usgen then removes its temporary
    files and stops its helpers, as for Ctrl-C), then SIGKILL to whatever still runs after
    ``graceSeconds``. Each process is signalled itself because the PythonSlicer launcher passes
    no signal on. Return True when SIGTERM was enough."""
    if pid <= 0:  # 0 and -1 would mean "my own process group" and "every process"
        return True
    if os.name == "nt":  # no SIGTERM for console programs
        killProcessTree(pid)
        return False
    tree = [pid] + descendants(pid)
    for process in tree:
        try:
            os.kill(process, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + graceSeconds
    while any(processRuns(process) for process in tree) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [process for process in tree if processRuns(process)]
    for process in survivors:  # orphans too: once the launcher is gone, pgrep no longer finds them
        killProcessTree(process)
    return not survivors


def killProcessTree(pid):
    """Kill a process and all its descendants.

    PythonSlicer is a launcher that runs the real Python as its child and does not pass
    signals on, so killing the launcher alone would leave the job running.
    """
    if pid <= 0:  # 0 and -1 would mean "my own process group" and "every process"
        return
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True)
        return
    try:
        os.kill(pid, signal.SIGSTOP)  # a stopped process starts no new child while we look
    except ProcessLookupError:
        return
    try:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    except FileNotFoundError:  # without pgrep only the process itself can be killed
        children = []
    for child in children:
        killProcessTree(int(child))
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # it ended on its own meanwhile
        pass


#
# USGen
#


class USGen(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("USGen")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Ultrasound")]
        self.parent.dependencies = ["Sequences"]
        self.parent.contributors = ["USGen team"]
        self.parent.helpText = _("""
Generative ultrasound. <b>Load ultrasound</b> converts a DICOM cine, a video or a volume sequence
with the <code>usgen</code> command, in a background process that Cancel stops, and shows the
result as a sequence. Python packages are installed on the first Apply, after you agree.
See the <a href="https://github.com/usgen/SlicerUSGen/blob/main/docs/slicer.md">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
USGen is built on 3D Slicer, MONAI, PyTorch, pydicom, SimpleITK, pynrrd and slicerio.
""")


#
# USGenWidget
#


class USGenWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/USGen.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = USGenLogic()
        self.logic.progressCallback = self.onJobProgress
        self.logic.finishedCallback = self.onJobFinished

        # A job still running when the scene closes would load its results into the next scene.
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)

        self.ui.outputFolderLineEdit.comboBox().lineEdit().placeholderText = _("a new temporary folder")
        self.ui.inputPathLineEdit.connect("currentPathChanged(QString)", self.updateButtons)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.updateButtons()

    def cleanup(self):
        self.removeObservers()
        self.logic.progressCallback = None
        self.logic.finishedCallback = None
        self.logic.cancel()
        self.logic.waitForFinished(3000)  # lets the cancelled job's files be removed

    def onSceneStartClose(self, caller, event):
        self.logic.cancel()

    def updateButtons(self, *args):
        running = self.logic.isRunning()
        self.ui.applyButton.enabled = bool(self.ui.inputPathLineEdit.currentPath) and not running
        self.ui.cancelButton.enabled = running
        self.ui.inputPathLineEdit.enabled = not running
        self.ui.outputFolderLineEdit.enabled = not running

    def onApplyButton(self):
        inputPath = self.ui.inputPathLineEdit.currentPath
        outputDir = self.ui.outputFolderLineEdit.currentPath
        with slicer.util.tryWithErrorDisplay(_("Failed to start USGen.")):
            if not os.path.isfile(inputPath):
                raise ValueError(_("Input file not found: {path}").format(path=inputPath))
            if not self.logic.ensureDependencies():
                self.ui.statusLabel.text = _("USGen cannot run without its Python packages.")
                return
            self.ui.inputPathLineEdit.addCurrentPathToHistory()
            if outputDir:
                self.ui.outputFolderLineEdit.addCurrentPathToHistory()
            self.logic.convert(inputPath, outputDir)
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = _("Converting {name}...").format(name=os.path.basename(inputPath))
        self.updateButtons()

    def onCancelButton(self):
        self.logic.cancel()

    def onJobProgress(self, message):
        self.ui.progressBar.value = round(100 * float(message["progress"]))
        self.ui.statusLabel.text = ": ".join(str(message[key]) for key in ("stage", "message") if message.get(key))

    def onJobFinished(self, result):
        self.updateButtons()
        if result.cancelled:
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = _("Cancelled. The files the job had written were removed.")
            return
        if result.error:
            self.ui.statusLabel.text = result.error
            slicer.util.errorDisplay(result.error, windowTitle=_("USGen failed"), detailedText=result.details)
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to load the USGen outputs."), waitCursor=True):
            self.logic.loadOutputs(result.outputs)
            self.ui.statusLabel.text = _("Loaded {files}").format(files=", ".join(result.outputs))


#
# USGenLogic
#


class USGenLogic(ScriptedLoadableModuleLogic):
    """Runs usgen jobs in a background process and loads their outputs. Works without the GUI:

        logic = USGenLogic()
        logic.finishedCallback = print
        logic.convert("/data/cine.dcm")
        logic.waitForFinished()

    progressCallback receives each progress message (a dict), finishedCallback a JobResult.
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.progressCallback = None
        self.finishedCallback = None
        self._output = JobOutput()
        self._outputDir = None
        self._createdOutputDir = False
        self._entriesBefore = set()
        self._cancelled = False
        self._process = qt.QProcess()
        self._process.connect("readyReadStandardOutput()", self._onStdout)
        self._process.connect("readyReadStandardError()", self._onStderr)
        self._process.connect("finished(int,QProcess::ExitStatus)", self._onFinished)
        self._process.connect("errorOccurred(QProcess::ProcessError)", self._onError)

    def isRunning(self):
        return self._process.state() != qt.QProcess.NotRunning

    def ensureDependencies(self):
        """Install the Python packages USGenLib needs, after the user agrees.
        Return False if some are missing and the user declined."""
        missing = missingRequirements(REQUIREMENTS)
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
            _("USGen runs its jobs with Python packages that this Slicer does not have yet "
              "(see details). Install them now?\n\n"
              "The download can reach several GB, most of it PyTorch with its GPU libraries, and "
              "takes minutes. PyTorch comes from PyPI in its default build for this computer. "
              "For another build (CPU-only, or a given CUDA version), press Cancel, install torch "
              "with the PyTorch Utils module of the PyTorch extension, then press Apply again."),
            windowTitle=_("USGen: install Python packages"),
            detailedText="\n".join(missing),
        ):
            return False
        slicer.util.pip_install(missing)
        return True

    def convert(self, inputPath, outputDir=""):
        """Start ``usgen convert`` of an ultrasound file (DICOM, video, .seq.nrrd) into
        outputDir (default: a new temporary folder); return the .seq.nrrd path it will write."""
        outputDir = self._prepareOutputDir(outputDir)
        outputPath = convertedPath(inputPath, outputDir)
        self._start("convert", inputPath, outputPath)
        return outputPath

    def cancel(self):
        """Stop the running job: SIGTERM, so it removes its temporary files and stops its helper
        processes, then SIGKILL after TERMINATE_GRACE_S if it has not ended (the panel waits that
        long at most). finishedCallback then reports it cancelled, and what the job wrote is removed."""
        if not self.isRunning():
            return
        self._cancelled = True
        stopProcessTree(self._process.processId())
        self._process.kill()  # ends QProcess's wait for a launcher that already ended

    def waitForFinished(self, timeoutMs=-1):
        """Block until the running job has ended (for scripts and tests); False on timeout."""
        return not self.isRunning() or self._process.waitForFinished(timeoutMs)

    def loadOutputs(self, paths):
        """Load output files with Slicer's readers and show them. All sequences go under one
        browser, the first as master, so they play in step. Return that browser, or None."""
        sequences, volumes = [], []
        for path in paths:
            kind = outputKind(path)
            if kind == "sequence":
                # show=False: otherwise the reader gives every sequence a browser of its own.
                sequences.append(slicer.util.loadNodeFromFile(path, "SequenceFile", {"show": False}))
            elif kind == "segmentation":
                slicer.util.loadSegmentation(path)
            elif kind == "volume":
                volumes.append(slicer.util.loadVolume(path, {"show": False}))
        browser = self._browse(sequences) if sequences else None
        shown = browser.GetProxyNode(sequences[0]) if browser else (volumes[0] if volumes else None)
        if shown:
            slicer.util.setSliceViewerLayers(background=shown, fit=True)
        return browser

    @staticmethod
    def _browse(sequences):
        master = sequences[0]
        browser = slicer.mrmlScene.AddNewNodeByClass(
            "vtkMRMLSequenceBrowserNode", slicer.mrmlScene.GenerateUniqueName(master.GetName() + " browser"))
        browser.SetAndObserveMasterSequenceNodeID(master.GetID())
        for sequence in sequences[1:]:
            browser.AddSynchronizedSequenceNode(sequence)
        if master.GetIndexType() == master.NumericIndex and master.GetIndexUnit() == "s":
            fps = playbackFps([float(master.GetNthIndexValue(i)) for i in range(master.GetNumberOfDataNodes())])
            if fps:
                browser.SetPlaybackRateFps(fps)
        slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
        slicer.modules.sequences.showSequenceBrowser(browser)
        return browser

    def _prepareOutputDir(self, outputDir):
        """Create the output folder if needed and note what Cancel may remove from it."""
        if self.isRunning():
            raise RuntimeError(_("A USGen job is already running."))
        if outputDir:
            self._createdOutputDir = not os.path.isdir(outputDir)
            os.makedirs(outputDir, exist_ok=True)
        else:
            outputDir = slicer.util.tempDirectory("USGen-")
            self._createdOutputDir = True
        self._outputDir = outputDir
        self._entriesBefore = set(os.listdir(outputDir))
        return outputDir

    def _start(self, job, *args):
        program = shutil.which("PythonSlicer") or sys.executable
        arguments = usgenArguments(job, *args)
        environment = qt.QProcessEnvironment.systemEnvironment()
        libFolder = usgenLibFolder(os.path.dirname(os.path.abspath(__file__)))
        if libFolder:
            pythonPath = environment.value("PYTHONPATH")
            environment.insert("PYTHONPATH", os.pathsep.join([libFolder, pythonPath]) if pythonPath else libFolder)
        self._process.setProcessEnvironment(environment)
        self._output = JobOutput()
        self._cancelled = False
        logging.info("USGen runs: %s %s", program, " ".join(arguments))
        self._process.start(program, arguments)

    def _onStdout(self):
        for message in self._output.feedStdout(bytes(self._process.readAllStandardOutput().data())):
            if self.progressCallback:
                self.progressCallback(message)

    def _onStderr(self):
        self._output.feedStderr(bytes(self._process.readAllStandardError().data()))

    def _onFinished(self, exitCode, exitStatus):
        self._onStdout()
        self._onStderr()
        crashed = exitStatus == qt.QProcess.CrashExit
        self._finish(self._output.finish(exitCode, crashed=crashed, cancelled=self._cancelled))

    def _onError(self, error):
        # A process that failed to start never emits finished().
        if error == qt.QProcess.FailedToStart:
            message = _("Could not start {program}: {reason}").format(
                program=self._process.program(), reason=self._process.errorString())
            self._finish(JobResult(error=message))

    def _finish(self, result):
        if not result.succeeded:
            self._removeJobFiles()
        if self.finishedCallback:
            self.finishedCallback(result)

    def _removeJobFiles(self):
        """Remove what a failed or cancelled job left: the whole output folder if this logic
        created it, else only the entries that appeared while the job ran (such as the
        temporary file of an interrupted atomic write)."""
        if not os.path.isdir(self._outputDir):
            return
        if self._createdOutputDir:
            shutil.rmtree(self._outputDir, ignore_errors=True)
            return
        for name in set(os.listdir(self._outputDir)) - self._entriesBefore:
            path = os.path.join(self._outputDir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)


#
# USGenTest
#


class USGenTest(ScriptedLoadableModuleTest):
    """Runs in Slicer only (Reload and Test, or ctest in a build tree). Converts the
    multi-frame ultrasound DICOM bundled with pydicom through the real `usgen` command."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_LoadUltrasoundDicom()
        self.setUp()
        self.test_CancelRemovesOutput()

    @staticmethod
    def _sampleCine():
        from pydicom.data import get_testdata_file

        return get_testdata_file("examples_ybr_color.dcm")  # 30 frames, 320x240, YBR colour

    def test_LoadUltrasoundDicom(self):
        logic = USGenLogic()
        self.assertTrue(logic.ensureDependencies())
        results = []
        logic.finishedCallback = results.append
        outputPath = logic.convert(self._sampleCine())
        self.assertTrue(logic.waitForFinished(10 * 60 * 1000))

        self.assertEqual(len(results), 1)
        self.assertTrue(results[0].succeeded, results[0].error + "\n" + results[0].details)
        self.assertEqual([os.path.realpath(path) for path in results[0].outputs], [os.path.realpath(outputPath)])

        browser = logic.loadOutputs(results[0].outputs)
        self.assertEqual(len(slicer.util.getNodesByClass("vtkMRMLSequenceBrowserNode")), 1)
        sequence = browser.GetMasterSequenceNode()
        self.assertEqual(sequence.GetNumberOfDataNodes(), 30)
        self.assertEqual(browser.GetNumberOfItems(), 30)
        proxy = browser.GetProxyNode(sequence)
        self.assertEqual(proxy.GetImageData().GetDimensions(), (320, 240, 1))
        self.assertEqual(proxy.GetImageData().GetNumberOfScalarComponents(), 3)
        sliceView = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSliceCompositeNode")
        self.assertEqual(sliceView.GetBackgroundVolumeID(), proxy.GetID())
        self.delayDisplay("Ultrasound DICOM loaded as a 30-frame sequence")

    def test_CancelRemovesOutput(self):
        logic = USGenLogic()
        results = []
        logic.finishedCallback = results.append
        outputPath = logic.convert(self._sampleCine())
        logic.cancel()
        self.assertTrue(logic.waitForFinished(30 * 1000))

        self.assertEqual(len(results), 1)
        self.assertTrue(results[0].cancelled)
        self.assertFalse(os.path.exists(os.path.dirname(outputPath)))
        self.delayDisplay("Cancelled job left no files")
