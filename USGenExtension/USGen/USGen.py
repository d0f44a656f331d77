"""USGen: the Slicer front end of USGenLib.

The module holds no science. Every job is the `usgen` command, run as a background process
(``PythonSlicer -m USGenLib <job> ... --progress-json``): the GUI never freezes, Cancel stops the
job (SIGTERM, then SIGKILL after 2 s), progress arrives as one JSON object per stdout line, and the
output files are loaded with Slicer's own readers. What a finished job means for the scene is
computed as plain data by USGenPlan.py (tested without Slicer); USGenLogic.executePlan carries it
out. See docs/slicer.md and docs/architecture.md.
"""

import html
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
import vtk
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin

#
# Pure helpers. They use neither slicer nor qt, so Testing/test_slicer_module.py runs them
# without Slicer; USGenPlan holds the command lines and load plans.
#

import USGenPlan
from USGenPlan import MIN_SLICER_VERSION, readRequirements, splitTorch, usgenArguments

# Slicer ships these and replacing them under it would break Slicer, so the requirements file
# (the package's dependencies, a test keeps the two equal) lists all the others.
SLICER_PROVIDED = ["numpy", "SimpleITK"]
REQUIREMENTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", "requirements.txt")

# Endings dropped when naming an output after its input. Other dots stay: DICOM files are
# often named by UID ("1.2.840.113619.2.55").
INPUT_ENDINGS = (".seq.nrrd", ".nrrd", ".dcm", ".avi", ".mp4")

# Cancel asks a job to stop (SIGTERM) and waits this long for its cleanup before killing it.
TERMINATE_GRACE_S = 2.0

# The panel's job sections: the widgets each has (<section><suffix> in USGen.ui), the usgen job it
# runs, and whether it offers a device choice.
SECTIONS = {"load": "convert", "simulate": "simulate", "cfd": "cfd remove", "enhance": "enhance",
            "echo": "echo generate", "dataset": "dataset"}
SECTION_WIDGETS = ("CollapsibleButton", "ApplyButton", "CancelButton", "ProgressBar", "StatusLabel")
DEVICE_SECTIONS = ("simulate", "cfd", "enhance", "echo")

# Node attributes by which the module finds its own nodes again.
ATTRIBUTE_JOB = "USGen.Job"
ATTRIBUTE_FOLDER = "USGen.OutputFolder"
ATTRIBUTE_INPUT_NAME = "USGen.InputName"


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


def ensurePackages(slicerModule, requirements, versionOf=installedVersion, torchUtils=None):
    """Install the packages USGenLib needs that are missing, after the user agrees; never in
    Slicer's testing mode (a test must not change Slicer's Python). torch goes through the
    PyTorch extension's PyTorch Utils when given (it picks the build for this computer's GPU
    driver), the others through slicer.packaging.pip_ensure where this Slicer has it, else
    slicer.util.pip_install after a confirm dialog. Return True when everything is there."""
    missing = missingRequirements(requirements, versionOf)
    if not missing:
        return True
    if slicerModule.app.testingEnabled():
        logging.info("USGen: testing mode, not installing %s", ", ".join(missing))
        return False
    torchSpec, others = splitTorch(missing)
    if torchSpec and torchUtils is not None:
        question = ("USGen runs its networks with PyTorch, which this Slicer does not have yet. Install it now "
                    "with PyTorch Utils (a download of up to several GB)?")
        if not slicerModule.util.confirmOkCancelDisplay(question, windowTitle="USGen: install PyTorch"):
            return False
        torchUtils.installTorch(askConfirmation=False,
                                torchVersionRequirement=torchSpec[len(USGenPlan.requirementName(torchSpec)):].strip())
        missing = others
    if not missing:
        return True
    packaging = getattr(slicerModule, "packaging", None)
    if packaging is not None and hasattr(packaging, "pip_ensure"):
        try:
            packaging.pip_ensure(missing, requester="USGen", skip_in_testing=True)
        except RuntimeError:  # the user declined
            return False
        return True
    if not slicerModule.util.confirmOkCancelDisplay(
            "USGen runs its jobs with Python packages that this Slicer does not have yet (see details). "
            "Install them now? The download can reach several GB, most of it PyTorch.",
            windowTitle="USGen: install Python packages", detailedText="\n".join(missing)):
        return False
    slicerModule.util.pip_install(missing)
    return True


def slicerVersionSupported(major, minor):
    return (int(major), int(minor)) >= MIN_SLICER_VERSION


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
        self.parent.dependencies = ["Sequences", "Segmentations"]
        self.parent.contributors = ["USGen team (USGen project)"]
        self.parent.helpText = _("""
Generative ultrasound, each job a background process that Cancel stops:
<b>Load</b> a DICOM cine, video or volume sequence; <b>Simulate</b> a B-mode sweep (with tissue
labels as segmentations, attenuation and field-of-view mask) from a CT or label volume and a probe
transform; <b>CFD removal</b> turns a colour-Doppler cine into a B-mode cine and a colour mask;
<b>Enhance</b> makes a simulation look like a real scan; <b>Echo</b> generates echocardiogram
clips with LV segmentations and their ejection fraction; <b>Training data</b> writes paired data
sets to a folder. Outputs play in the input's sequence browser, side by side with it.
Requires Slicer 5.10 or later. Python packages are installed on the first Apply, after you agree.
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
        self._runningSection = None

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

        if not slicerVersionSupported(slicer.app.majorVersion, slicer.app.minorVersion):
            self.ui.versionLabel.text = _("USGen needs Slicer {major}.{minor} or later.").format(
                major=MIN_SLICER_VERSION[0], minor=MIN_SLICER_VERSION[1])
        self.ui.outputFolderLineEdit.comboBox().lineEdit().placeholderText = _("a new temporary folder")
        for combo, values in ((self.ui.simulateProbeComboBox, USGenPlan.PROBES),
                              (self.ui.simulateQualityComboBox, USGenPlan.QUALITIES),
                              (self.ui.echoViewComboBox, USGenPlan.ECHO_VIEW_CHOICES),
                              (self.ui.datasetKindComboBox, USGenPlan.DATASET_KINDS)):
            combo.clear()
            combo.addItems(list(values))
        for section in DEVICE_SECTIONS:
            combo = getattr(self.ui, section + "DeviceComboBox")
            combo.clear()
            for device, label in zip(USGenPlan.DEVICES, (_("auto"), _("CPU"), _("GPU (CUDA)"))):
                combo.addItem(label, device)
        # Simulation outputs are what Enhance takes; the attribute marks the module's own browsers.
        self.ui.enhanceInputSelector.addAttribute("vtkMRMLSequenceBrowserNode", ATTRIBUTE_JOB, "simulate")

        for section in SECTIONS:
            getattr(self.ui, section + "ApplyButton").connect("clicked(bool)", lambda _checked, s=section: self.onApply(s))
            getattr(self.ui, section + "CancelButton").connect("clicked(bool)", self.onCancelButton)
        self.ui.loadInputPathLineEdit.connect("currentPathChanged(QString)", self.updateButtons)
        self.ui.enhanceFolderLineEdit.connect("currentPathChanged(QString)", self.updateButtons)
        self.ui.datasetFolderLineEdit.connect("currentPathChanged(QString)", self.updateButtons)
        for selector in (self.ui.simulateVolumeSelector, self.ui.cfdInputSelector, self.ui.enhanceInputSelector):
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
        self.ui.simulateDefaultPoseButton.connect("clicked(bool)", self.onDefaultPose)
        self.updateButtons()

    def cleanup(self):
        self.removeObservers()
        self.logic.progressCallback = None
        self.logic.finishedCallback = None
        self.logic.cancel()
        self.logic.waitForFinished(3000)  # lets the cancelled job's files be removed

    def onSceneStartClose(self, caller, event):
        self.logic.cancel()

    def _ready(self, section):
        """Whether a section has the inputs its job needs."""
        if section == "load":
            return bool(self.ui.loadInputPathLineEdit.currentPath)
        if section == "simulate":
            return self.ui.simulateVolumeSelector.currentNode() is not None
        if section == "cfd":
            return self.ui.cfdInputSelector.currentNode() is not None
        if section == "enhance":
            return self.ui.enhanceInputSelector.currentNode() is not None or bool(self.ui.enhanceFolderLineEdit.currentPath)
        if section == "dataset":
            return bool(self.ui.datasetFolderLineEdit.currentPath)
        return True

    def updateButtons(self, *args):
        running = self.logic.isRunning()
        for section in SECTIONS:
            getattr(self.ui, section + "ApplyButton").enabled = not running and self._ready(section)
            getattr(self.ui, section + "CancelButton").enabled = running and section == self._runningSection
        self.ui.outputFolderLineEdit.enabled = not running
        self.ui.simulateDefaultPoseButton.enabled = self.ui.simulateVolumeSelector.currentNode() is not None

    def _device(self, section):
        combo = getattr(self.ui, section + "DeviceComboBox")
        return combo.itemData(combo.currentIndex) or "auto"

    def onDefaultPose(self):
        """A transform at the pose `usgen simulate` would use, for the user to move (Transforms module)."""
        volume = self.ui.simulateVolumeSelector.currentNode()
        if volume is None:
            return
        self.ui.simulatePoseSelector.setCurrentNode(self.logic.defaultPoseTransform(volume))

    def onApply(self, section):
        self._runningSection = section  # before the job starts: its first progress line may come at once
        try:
            with slicer.util.tryWithErrorDisplay(_("Failed to start USGen.")):
                self._startJob(section)
        finally:
            if not self.logic.isRunning():  # it did not start (packages declined, or an error was shown)
                self._runningSection = None
            self.updateButtons()

    def _startJob(self, section):
        outputDir = self.ui.outputFolderLineEdit.currentPath
        if not self.logic.ensureDependencies():
            getattr(self.ui, section + "StatusLabel").text = _("USGen cannot run without its Python packages.")
            return
        if outputDir:
            self.ui.outputFolderLineEdit.addCurrentPathToHistory()
        if section == "load":
            inputPath = self.ui.loadInputPathLineEdit.currentPath
            if not os.path.isfile(inputPath):
                raise ValueError(_("Input file not found: {path}").format(path=inputPath))
            self.ui.loadInputPathLineEdit.addCurrentPathToHistory()
            self.logic.convert(inputPath, outputDir)
        elif section == "simulate":
            height, width = self.ui.simulateHeightSpinBox.value, self.ui.simulateWidthSpinBox.value
            self.logic.simulate(self.ui.simulateVolumeSelector.currentNode(), self.ui.simulatePoseSelector.currentNode(),
                                probe=self.ui.simulateProbeComboBox.currentText,
                                quality=self.ui.simulateQualityComboBox.currentText,
                                sweep=self.ui.simulateSweepSpinBox.value, size=(height, width),
                                enhance=self.ui.simulateEnhanceCheckBox.checked,
                                device=self._device("simulate"), outputDir=outputDir)
        elif section == "cfd":
            self.logic.removeColorFlow(self.ui.cfdInputSelector.currentNode(), device=self._device("cfd"),
                                       outputDir=outputDir)
        elif section == "enhance":
            browser = self.ui.enhanceInputSelector.currentNode()
            folder = browser.GetAttribute(ATTRIBUTE_FOLDER) if browser else self.ui.enhanceFolderLineEdit.currentPath
            self.logic.enhance(folder, browser=browser, weights=self.ui.enhanceWeightsLineEdit.currentPath or None,
                               device=self._device("enhance"), outputDir=outputDir)
        elif section == "echo":
            high = self.ui.echoEfHighSpinBox.value   # its minimum shows "none": one EF for every clip
            self.logic.generateEcho(view=self.ui.echoViewComboBox.currentText, ef=self.ui.echoEfSpinBox.value,
                                    n=self.ui.echoCountSpinBox.value, frames=self.ui.echoFramesSpinBox.value,
                                    seed=self.ui.echoSeedSpinBox.value, device=self._device("echo"),
                                    outputDir=outputDir,
                                    efHigh=None if high == self.ui.echoEfHighSpinBox.minimum else high)
        elif section == "dataset":
            self.logic.generateDataset(self.ui.datasetKindComboBox.currentText, self.ui.datasetCountSpinBox.value,
                                       self.ui.datasetFolderLineEdit.currentPath, seed=self.ui.datasetSeedSpinBox.value)
        getattr(self.ui, section + "ProgressBar").value = 0
        getattr(self.ui, section + "StatusLabel").text = _("Running usgen {job}...").format(job=SECTIONS[section])

    def onCancelButton(self):
        self.logic.cancel()

    def onJobProgress(self, message):
        if self._runningSection is None:
            return
        getattr(self.ui, self._runningSection + "ProgressBar").value = round(100 * float(message["progress"]))
        getattr(self.ui, self._runningSection + "StatusLabel").text = ": ".join(
            str(message[key]) for key in ("stage", "message") if message.get(key))

    def onJobFinished(self, result):
        section, self._runningSection = self._runningSection, None
        self.updateButtons()
        if section is None:
            return
        status = getattr(self.ui, section + "StatusLabel")
        if result.cancelled:
            getattr(self.ui, section + "ProgressBar").value = 0
            status.text = _("Cancelled. The files the job had written were removed.")
            return
        if result.error:
            status.text = result.error
            slicer.util.errorDisplay(result.error, windowTitle=_("USGen failed"), detailedText=result.details)
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to load the USGen outputs."), waitCursor=True):
            plan = self.logic.loadResult(result)
            status.text = self._describe(plan)

    @staticmethod
    def _describe(plan):
        """The panel's summary: device used, report figures, the folder (as a link) and any problem."""
        lines = []
        if plan.device:
            lines.append(_("Device used: {device}").format(device=plan.device))
        for title, reportLines in plan.reports:
            lines.append(f"<b>{html.escape(title)}</b>")
            lines += [html.escape(line) for line in reportLines]
        if plan.folder:
            url = qt.QUrl.fromLocalFile(plan.folder).toString()
            lines.append(f'<a href="{html.escape(url)}">{html.escape(plan.folder)}</a>')
        lines += [f"<span style='color:#b00'>{html.escape(problem)}</span>" for problem in plan.problems]
        return "<br>".join(lines)


#
# USGenLogic
#


class USGenLogic(ScriptedLoadableModuleLogic):
    """Runs usgen jobs in a background process and loads their outputs. Works without the GUI:

        logic = USGenLogic()
        logic.finishedCallback = print
        logic.convert("/data/cine.dcm")
        logic.waitForFinished()

    progressCallback receives each progress message (a dict), finishedCallback a JobResult;
    loadResult(result) then brings the outputs into the scene and returns the LoadPlan it followed.
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
        self._job = None
        self._inputDir = None  # where the module saved the job's input nodes; removed after the job
        self._inputSequence = None
        self._inputBrowser = None
        self._inputName = ""
        self._process = qt.QProcess()
        self._process.connect("readyReadStandardOutput()", self._onStdout)
        self._process.connect("readyReadStandardError()", self._onStderr)
        self._process.connect("finished(int,QProcess::ExitStatus)", self._onFinished)
        self._process.connect("errorOccurred(QProcess::ProcessError)", self._onError)

    def isRunning(self):
        return self._process.state() != qt.QProcess.NotRunning

    def ensureDependencies(self):
        """Install the Python packages USGenLib needs, after the user agrees (never in testing mode).
        Return False if some are missing and were not installed."""
        try:
            import PyTorchUtils  # the PyTorch extension (EXTENSION_DEPENDS)

            torchUtils = PyTorchUtils.PyTorchUtilsLogic()
        except ImportError:
            torchUtils = None
        return ensurePackages(slicer, readRequirements(REQUIREMENTS_FILE), torchUtils=torchUtils)

    # --- jobs -------------------------------------------------------------------------------

    def convert(self, inputPath, outputDir=""):
        """Start ``usgen convert`` of an ultrasound file (DICOM, video, .seq.nrrd) into
        outputDir (default: a new temporary folder); return the .seq.nrrd path it will write."""
        outputDir = self._prepareOutputDir(outputDir)
        outputPath = convertedPath(inputPath, outputDir)
        self._start("convert", usgenArguments("convert", inputPath, outputPath))
        return outputPath

    def simulate(self, volumeNode, poseTransformNode=None, probe="convex", quality="low", sweep=1, size=(256, 256),
                 enhance=False, device="auto", outputDir="", seed=0):
        """Start ``usgen simulate`` of a CT or label volume from the scene; the probe pose is the
        transform's probe-to-world matrix (none: the command's default pose). Return the output folder."""
        inputDir = self._saveInputs()
        try:
            volumePath = self._writeCopy(volumeNode, os.path.join(inputDir, "volume.nrrd"))
            posePath = None
            if poseTransformNode is not None:
                matrix = vtk.vtkMatrix4x4()
                poseTransformNode.GetMatrixTransformToWorld(matrix)
                posePath = os.path.join(inputDir, "pose.json")
                with open(posePath, "w", encoding="utf-8") as fh:
                    fh.write(USGenPlan.poseJson([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)]))
        except Exception:
            self._discardInputs()
            raise
        outDir = self._jobFolder(outputDir, "simulate", volumeNode.GetName())
        self._inputName = volumeNode.GetName()
        self._start("simulate", USGenPlan.simulateArguments(outDir, ct=volumePath, pose=posePath, probe=probe,
                                                             quality=quality, sweep=sweep, size=size, seed=seed,
                                                             enhance=enhance, device=device))
        return outDir

    def removeColorFlow(self, volumeNode, device="auto", outputDir=""):
        """Start ``usgen cfd remove`` of a colour cine in the scene (a sequence's proxy volume, or
        one volume). Return the output folder."""
        inputPath = self._saveCine(volumeNode)
        outDir = self._jobFolder(outputDir, "cfd", volumeNode.GetName())
        self._start("cfd remove", USGenPlan.cfdRemoveArguments(inputPath, outDir, device=device))
        return outDir

    def enhance(self, simulationFolder, browser=None, weights=None, device="auto", outputDir=""):
        """Start ``usgen enhance`` of a `usgen simulate` folder; with ``browser`` (that simulation in
        the scene) the enhanced cine joins it. Return the output folder."""
        if not simulationFolder or not os.path.isdir(simulationFolder):
            raise ValueError(_("Not a simulation folder: {path}").format(path=simulationFolder))
        outDir = self._jobFolder(outputDir, "enhance", os.path.basename(os.path.normpath(simulationFolder)))
        self._inputBrowser = browser
        self._inputSequence = os.path.join(simulationFolder, "bmode.seq.nrrd")
        self._inputName = (browser.GetAttribute(ATTRIBUTE_INPUT_NAME) or "") if browser else ""
        self._start("enhance", USGenPlan.enhanceArguments(simulationFolder, outDir, weights=weights, device=device))
        return outDir

    def generateEcho(self, view="A4C", ef=55.0, n=1, frames=32, seed=0, device="auto", outputDir="", efHigh=None):
        """Start ``usgen echo generate`` (EFs spread from ``ef`` to ``efHigh`` when given). Return the output folder."""
        efs = f"EF{int(ef)}" if efHigh is None else f"EF{int(ef)}-{int(efHigh)}"
        outDir = self._jobFolder(outputDir, "echo", f"{view}-{efs}")
        self._start("echo generate", USGenPlan.echoArguments(outDir, view=view, ef=ef, n=n, frames=frames, seed=seed,
                                                              device=device, efHigh=efHigh))
        return outDir

    def generateDataset(self, kind, n, folder, seed=0):
        """Start ``usgen dataset KIND`` into ``folder`` (which must not exist or be empty)."""
        if self.isRunning():
            raise RuntimeError(_("A USGen job is already running."))
        # Cancel removes what appears: the folder itself when usgen makes it, else what appears in it.
        watched = folder if os.path.isdir(folder) else os.path.dirname(os.path.abspath(folder))
        os.makedirs(watched, exist_ok=True)
        self._outputDir, self._createdOutputDir = watched, False
        self._entriesBefore = set(os.listdir(watched))
        self._start("dataset", USGenPlan.datasetArguments(kind, n, folder, seed=seed))
        return folder

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

    # --- outputs ----------------------------------------------------------------------------

    def loadResult(self, result):
        """Bring a finished job's outputs into the scene; return the LoadPlan it followed."""
        plan = USGenPlan.loadPlan(self._job, result.outputs, inputSequence=self._inputSequence, inputName=self._inputName)
        self.executePlan(plan, self._inputBrowser)
        return plan

    def loadOutputs(self, paths, job="convert"):
        """Load output files (a job's `done` list) as the plan for ``job`` says; return the first browser."""
        browsers = self.executePlan(USGenPlan.loadPlan(job, paths))
        return browsers[0] if browsers else None

    def executePlan(self, plan, inputBrowser=None):
        """Carry out a LoadPlan with Slicer's API; return the browsers that hold its sequences."""
        browsers, shown = [], {}
        for browserPlan in plan.browsers:
            browser = inputBrowser if browserPlan.joinInput and inputBrowser is not None else None
            if browser is None:
                browser = slicer.mrmlScene.AddNewNodeByClass(
                    "vtkMRMLSequenceBrowserNode", slicer.mrmlScene.GenerateUniqueName(browserPlan.name))
                # How Enhance finds a simulation in the scene, and its folder and name.
                browser.SetAttribute(ATTRIBUTE_JOB, plan.job.split()[0])
                browser.SetAttribute(ATTRIBUTE_FOLDER, os.path.dirname(browserPlan.sequences[0].path))
                browser.SetAttribute(ATTRIBUTE_INPUT_NAME, self._inputName)
            else:
                master = browser.GetMasterSequenceNode()
                shown["Red"] = browser.GetProxyNode(master) if master else None
            loaded = []
            for sequencePlan in browserPlan.sequences:
                # show=False: otherwise the reader gives every sequence a browser of its own.
                sequence = slicer.util.loadNodeFromFile(sequencePlan.path, "SequenceFile",
                                                        {"show": False, "name": sequencePlan.name})
                if sequencePlan.segments:
                    sequence = self._segmentationSequence(sequence, sequencePlan)
                if browser.GetMasterSequenceNode() is None:
                    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
                else:
                    browser.AddSynchronizedSequenceNode(sequence)
                loaded.append((sequencePlan, sequence))
            master = browser.GetMasterSequenceNode()
            if master.GetIndexType() == master.NumericIndex and master.GetIndexUnit() == "s":
                fps = playbackFps([float(master.GetNthIndexValue(i)) for i in range(master.GetNumberOfDataNodes())])
                if fps:
                    browser.SetPlaybackRateFps(fps)
            slicer.modules.sequences.logic().UpdateProxyNodesFromSequences(browser)
            for sequencePlan, sequence in loaded:
                if sequencePlan.view:
                    shown[sequencePlan.view] = browser.GetProxyNode(sequence)
            slicer.modules.sequences.showSequenceBrowser(browser)
            browsers.append(browser)
        for path, name in plan.labelVolumes:
            slicer.util.loadLabelVolume(path, {"name": name, "show": False})
        self._showViews(plan, shown)
        return browsers

    @staticmethod
    def _segmentationSequence(labelSequence, sequencePlan):
        """A segmentation sequence from a label-map sequence: every item's label map imported with
        the same segment ids (label value i -> the plan's id i), names and colours, so a segment is
        one structure across frames and the Segment Editor works on any frame."""
        segmentIds = vtk.vtkStringArray()
        for segmentId in USGenPlan.labelValuesToIds(sequencePlan.segments):
            segmentIds.InsertNextValue(segmentId)
        segmentation = slicer.mrmlScene.AddNewNodeByClass(USGenPlan.SEGMENTATION, "USGen import")
        segmentation.CreateDefaultDisplayNodes()
        output = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", labelSequence.GetName())
        output.SetIndexName(labelSequence.GetIndexName())
        output.SetIndexUnit(labelSequence.GetIndexUnit())
        output.SetIndexType(labelSequence.GetIndexType())
        logic = slicer.modules.segmentations.logic()
        try:
            for item in range(labelSequence.GetNumberOfDataNodes()):
                if not logic.ImportLabelmapToSegmentationNode(labelSequence.GetNthDataNode(item), segmentation, segmentIds):
                    raise RuntimeError(f"{sequencePlan.path}: frame {item} could not be made a segmentation")
                for segment in sequencePlan.segments:
                    found = segmentation.GetSegmentation().GetSegment(segment.segmentId)
                    if found is not None:
                        found.SetName(segment.name)
                        found.SetColor(*segment.color)
                output.SetDataNodeAtValue(segmentation, labelSequence.GetNthIndexValue(item))  # stores a copy
        finally:
            slicer.mrmlScene.RemoveNode(segmentation)
        slicer.mrmlScene.RemoveNode(labelSequence)
        return output

    @staticmethod
    def _showViews(plan, shown):
        """The plan's layout; each view shows its volume in the plane of the image, views linked."""
        layoutManager = slicer.app.layoutManager()
        if layoutManager is None:  # no GUI (a script)
            return
        if shown and plan.layout == USGenPlan.LAYOUT_SIDE_BY_SIDE:
            layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
        for viewName, volume in shown.items():
            sliceWidget = layoutManager.sliceWidget(viewName)
            if sliceWidget is None or volume is None:
                continue
            sliceWidget.mrmlSliceCompositeNode().SetBackgroundVolumeID(volume.GetID())
            sliceWidget.mrmlSliceNode().RotateToVolumePlane(volume)
            sliceWidget.sliceLogic().FitSliceToBackground()
        for viewName in shown:
            sliceWidget = layoutManager.sliceWidget(viewName)
            if sliceWidget is not None:
                sliceWidget.mrmlSliceCompositeNode().SetLinkedControl(plan.linkViews)

    def defaultPoseTransform(self, volumeNode):
        """A linear transform "USGen probe pose" at the default probe pose of ``volumeNode``."""
        ijkToRas = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRas)
        pose = USGenPlan.defaultProbePose([[ijkToRas.GetElement(r, c) for c in range(4)] for r in range(4)],
                                          volumeNode.GetImageData().GetDimensions())
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "USGen probe pose")
        matrix = vtk.vtkMatrix4x4()
        for r in range(4):
            for c in range(4):
                matrix.SetElement(r, c, pose[r][c])
        transform.SetMatrixTransformToParent(matrix)
        transform.CreateDefaultDisplayNodes()
        transform.GetDisplayNode().SetEditorVisibility(True)  # the interactive handles move the probe
        return transform

    # --- running ----------------------------------------------------------------------------

    def _saveInputs(self):
        """A new folder for the job's input files (removed when the job ends)."""
        if self.isRunning():
            raise RuntimeError(_("A USGen job is already running."))
        self._inputDir = slicer.util.tempDirectory("USGen-input-")
        return self._inputDir

    def _discardInputs(self):
        if self._inputDir:
            shutil.rmtree(self._inputDir, ignore_errors=True)
            self._inputDir = None

    def _saveCine(self, volumeNode):
        """Save a cine from the scene for a job: the whole sequence when the volume is a sequence's
        proxy (its browser is the one the outputs join), else the one volume."""
        inputDir = self._saveInputs()
        browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForProxyNode(volumeNode)
        sequence = browser.GetSequenceNode(volumeNode) if browser else None
        try:
            if sequence is not None:
                path = self._writeCopy(sequence, os.path.join(inputDir, "input.seq.nrrd"))
            else:
                path = self._writeCopy(volumeNode, os.path.join(inputDir, "input.nrrd"))
        except Exception:
            self._discardInputs()
            raise
        self._inputBrowser, self._inputSequence, self._inputName = browser, path if sequence else None, volumeNode.GetName()
        return path

    @staticmethod
    def _writeCopy(node, path):
        """Write a node to a file for a job through a storage node of its own: slicer.util.saveNode
        would make the node's storage point at this temporary file, which goes after the job."""
        storage = (slicer.vtkMRMLVolumeSequenceStorageNode() if node.IsA("vtkMRMLSequenceNode")
                   else slicer.vtkMRMLVolumeArchetypeStorageNode())
        storage.SetFileName(path)
        if not storage.WriteData(node):
            raise RuntimeError(_("Could not save {name} for the job.").format(name=node.GetName()))
        return path

    def _jobFolder(self, outputDir, job, inputName):
        """The job's own new folder inside outputDir (or a new temporary folder)."""
        if self.isRunning():
            raise RuntimeError(_("A USGen job is already running."))
        if not outputDir:
            self._outputDir = slicer.util.tempDirectory("USGen-")
            self._createdOutputDir = True
            self._entriesBefore = set()
            return self._outputDir
        os.makedirs(outputDir, exist_ok=True)
        base = USGenPlan.outputFolderName(job, inputName)
        name, number = base, 1
        while os.path.exists(os.path.join(outputDir, name)):
            number += 1
            name = f"{base}-{number}"
        self._outputDir = os.path.join(outputDir, name)
        self._createdOutputDir = True  # usgen creates it; Cancel removes it whole
        self._entriesBefore = set()
        return self._outputDir

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

    def _start(self, job, arguments):
        program = shutil.which("PythonSlicer") or sys.executable
        environment = qt.QProcessEnvironment.systemEnvironment()
        libFolder = usgenLibFolder(os.path.dirname(os.path.abspath(__file__)))
        if libFolder:
            pythonPath = environment.value("PYTHONPATH")
            environment.insert("PYTHONPATH", os.pathsep.join([libFolder, pythonPath]) if pythonPath else libFolder)
        self._process.setProcessEnvironment(environment)
        self._output = JobOutput()
        self._cancelled = False
        self._job = job
        if job not in ("cfd remove", "enhance"):
            self._inputBrowser = self._inputSequence = None
        if job in ("convert", "dataset", "echo generate"):
            self._inputName = ""
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
        self._discardInputs()  # the saved input nodes are of no use after the job
        if self.finishedCallback:
            self.finishedCallback(result)

    def _removeJobFiles(self):
        """Remove what a failed or cancelled job left: the whole output folder if this logic
        created it (or the job creates it), else only the entries that appeared while the job ran
        (such as the temporary file of an interrupted atomic write)."""
        if not self._outputDir or not os.path.isdir(self._outputDir):
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
    """Runs in Slicer only (Reload and Test, or ctest in a build tree). Each job runs through the
    real `usgen` command on small inputs with the bundled weights; the outputs must join their
    browser with the same frame count and the right proxy node classes, and Cancel must leave
    nothing behind. In testing mode nothing is installed: the Python packages must be there."""

    JOB_TIMEOUT_MS = 10 * 60 * 1000

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        if not USGenLogic().ensureDependencies():
            self.skipTest("USGenLib's Python packages are not installed (never installed in testing mode)")
        for test in (self.test_LoadUltrasoundDicom, self.test_Simulate, self.test_CfdRemoval, self.test_Enhance,
                     self.test_Echo, self.test_TrainingData, self.test_CancelRemovesOutput):
            self.setUp()
            test()

    @staticmethod
    def _sampleCine():
        from pydicom.data import get_testdata_file

        return get_testdata_file("examples_ybr_color.dcm")  # 30 frames, 320x240, YBR colour

    def _run(self, logic, start):
        """Start a job, wait for it, load its outputs; return the LoadPlan."""
        results = []
        logic.finishedCallback = results.append
        start()
        self.assertTrue(logic.waitForFinished(self.JOB_TIMEOUT_MS))
        slicer.app.processEvents()
        self.assertEqual(len(results), 1)
        self.assertTrue(results[0].succeeded, results[0].error + "\n" + results[0].details)
        plan = logic.loadResult(results[0])
        self.assertEqual(plan.problems, [])
        return plan

    def _assertBrowser(self, browser, expected):
        """The browser holds each sequence named in ``expected`` (name -> proxy class), all with
        the master's frame count and index values."""
        master = browser.GetMasterSequenceNode()
        nodes = vtk.vtkCollection()
        browser.GetSynchronizedSequenceNodes(nodes, True)
        sequences = {nodes.GetItemAsObject(i).GetName(): nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())}
        for name, proxyClass in expected.items():
            self.assertIn(name, sequences)
            sequence = sequences[name]
            self.assertEqual(sequence.GetNumberOfDataNodes(), master.GetNumberOfDataNodes(), name)
            self.assertEqual([sequence.GetNthIndexValue(i) for i in range(sequence.GetNumberOfDataNodes())],
                             [master.GetNthIndexValue(i) for i in range(master.GetNumberOfDataNodes())], name)
            self.assertEqual(browser.GetProxyNode(sequence).GetClassName(), proxyClass, name)

    def test_LoadUltrasoundDicom(self):
        logic = USGenLogic()
        plan = self._run(logic, lambda: logic.convert(self._sampleCine()))
        browser = slicer.util.getNodesByClass("vtkMRMLSequenceBrowserNode")[0]
        self.assertEqual(browser.GetNumberOfItems(), 30)
        proxy = browser.GetProxyNode(browser.GetMasterSequenceNode())
        self.assertEqual(proxy.GetClassName(), "vtkMRMLVectorVolumeNode")
        self.assertEqual(proxy.GetImageData().GetDimensions(), (320, 240, 1))
        self.assertEqual(plan.sequences[0].frames, 30)
        self.delayDisplay("Ultrasound DICOM loaded as a 30-frame sequence")

    def _phantomVolume(self):
        """A small label volume in the scene (tissue-table labels), as a user would load a CT."""
        import numpy as np

        labels = np.full((40, 48, 48), 3, dtype=np.uint8)  # soft tissue
        labels[15:25, 20:30, 15:33] = 6  # a liver block
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "phantom")
        slicer.util.updateVolumeFromArray(volume, labels)
        volume.SetSpacing(1.0, 1.0, 1.0)
        return volume

    def test_Simulate(self):
        logic = USGenLogic()
        volume = self._phantomVolume()
        pose = logic.defaultPoseTransform(volume)
        plan = self._run(logic, lambda: logic.simulate(volume, pose, sweep=3, size=(48, 48)))
        browser = slicer.util.getNodesByClass("vtkMRMLSequenceBrowserNode")[0]
        self._assertBrowser(browser, {"phantom B-mode": "vtkMRMLScalarVolumeNode",
                                      "phantom labels": "vtkMRMLSegmentationNode",
                                      "phantom attenuation": "vtkMRMLScalarVolumeNode"})
        self.assertEqual(browser.GetNumberOfItems(), 3)
        labels = browser.GetProxyNode(self._sequence(browser, "phantom labels"))
        names = [labels.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(labels.GetSegmentation().GetNumberOfSegments())]
        self.assertIn("soft tissue", names)
        self.assertIn("liver", names)
        self.assertTrue(plan.device)
        self.delayDisplay("Simulated sweep with tissue segmentations")

    def test_CfdRemoval(self):
        logic = USGenLogic()
        self._run(logic, lambda: logic.convert(self._sampleCine()))
        browser = slicer.util.getNodesByClass("vtkMRMLSequenceBrowserNode")[0]
        colour = browser.GetProxyNode(browser.GetMasterSequenceNode())
        plan = self._run(logic, lambda: logic.removeColorFlow(colour, device="cpu"))
        self.assertEqual(len(slicer.util.getNodesByClass("vtkMRMLSequenceBrowserNode")), 1)  # joined the input's
        name = colour.GetName()
        self._assertBrowser(browser, {f"{name} B-mode": "vtkMRMLScalarVolumeNode",
                                      f"{name} CFD mask": "vtkMRMLSegmentationNode"})
        self.assertEqual(browser.GetNumberOfItems(), 30)
        self.assertEqual(plan.layout, USGenPlan.LAYOUT_SIDE_BY_SIDE)
        self.assertTrue(plan.device.startswith("cpu"))
        self.delayDisplay("B-mode cine plays beside the colour cine")

    def test_Enhance(self):
        logic = USGenLogic()
        volume = self._phantomVolume()
        self._run(logic, lambda: logic.simulate(volume, None, sweep=2, size=(48, 48)))
        browser = slicer.util.getNodesByClass("vtkMRMLSequenceBrowserNode")[0]
        weights = self._enhanceWeights()
        self._run(logic, lambda: logic.enhance(browser.GetAttribute(ATTRIBUTE_FOLDER), browser=browser, weights=weights,
                                               device="cpu"))
        self.assertEqual(len(slicer.util.getNodesByClass("vtkMRMLSequenceBrowserNode")), 1)
        self._assertBrowser(browser, {"phantom B-mode": "vtkMRMLScalarVolumeNode",
                                      "phantom enhanced": "vtkMRMLScalarVolumeNode"})
        self.delayDisplay("Enhanced cine joined the simulation")

    @staticmethod
    def _bundled(job):
        folder = os.path.join(usgenLibFolder(os.path.dirname(os.path.abspath(__file__))), "Resources", "weights", job)
        return os.path.isdir(folder) and any(name.endswith(".safetensors") for name in os.listdir(folder))

    def _enhanceWeights(self):
        """None (the bundled weights), or, where none are bundled, an untrained tiny generator made for
        the test: it checks the files and the scene, not how real the images look."""
        if self._bundled("enhance"):
            return None
        path = os.path.join(slicer.util.tempDirectory("USGen-test-"), "tiny.safetensors")
        code = ("import sys, torch; from pathlib import Path; from USGenLib.enhance.networks import CONFIGS, generator; "
                "from USGenLib.train.weights import save_weights; torch.manual_seed(0); c = CONFIGS['tiny']; "
                "save_weights(Path(sys.argv[1]), 'enhance', generator(c).state_dict(), {**c.to_dict(), 'mode': 'paired'}, "
                "{'title': 'untrained tiny generator (USGenTest)', 'command': 'USGenTest', 'data': 'none'})")
        libFolder = usgenLibFolder(os.path.dirname(os.path.abspath(__file__)))
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [libFolder, os.environ.get("PYTHONPATH")])))
        subprocess.run([shutil.which("PythonSlicer") or sys.executable, "-c", code, path], check=True, env=environment)
        return path

    def test_Echo(self):
        if not self._bundled("echo"):  # its networks are too many to train for a test
            self.delayDisplay("Echo: no bundled weights in this build, job not run")
            return
        logic = USGenLogic()
        plan = self._run(logic, lambda: logic.generateEcho(view="A4C", ef=55, n=1, frames=8, device="cpu"))
        browsers = slicer.util.getNodesByClass("vtkMRMLSequenceBrowserNode")
        self.assertEqual(len(browsers), 1)
        cine, lv = plan.browsers[0].sequences[0], plan.browsers[0].sequences[1]
        self._assertBrowser(browsers[0], {cine.name: "vtkMRMLScalarVolumeNode", lv.name: "vtkMRMLSegmentationNode"})
        self.assertEqual(browsers[0].GetNumberOfItems(), 8)
        self.assertTrue(any("ef" in line.lower() for _title, lines in plan.reports for line in lines))
        self.delayDisplay("Echo clip with LV segmentation and EF")

    def test_TrainingData(self):
        logic = USGenLogic()
        folder = os.path.join(slicer.util.tempDirectory("USGen-test-"), "cfd-data")
        plan = self._run(logic, lambda: logic.generateDataset("cfd", 2, folder))
        self.assertEqual(os.path.realpath(plan.folder), os.path.realpath(folder))
        self.assertIn("items: 2", plan.reports[0][1])
        shutil.rmtree(os.path.dirname(folder), ignore_errors=True)

    def test_CancelRemovesOutput(self):
        logic = USGenLogic()
        results, progress = [], []
        logic.finishedCallback = results.append
        logic.progressCallback = progress.append
        volume = self._phantomVolume()
        outputDir = logic.simulate(volume, None, sweep=200, size=(128, 128))
        inputDir = logic._inputDir
        deadline = time.monotonic() + 120
        while not progress and logic.isRunning() and time.monotonic() < deadline:  # mid-job: it reports progress
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertTrue(progress and logic.isRunning())
        logic.cancel()
        self.assertTrue(logic.waitForFinished(30 * 1000))
        slicer.app.processEvents()
        self.assertEqual(len(results), 1)
        self.assertTrue(results[0].cancelled)
        self.assertFalse(os.path.exists(outputDir))
        self.assertFalse(os.path.exists(inputDir))
        self.assertEqual(len(slicer.util.getNodesByClass("vtkMRMLSequenceBrowserNode")), 0)
        self.assertEqual(len(slicer.util.getNodesByClass("vtkMRMLSequenceNode")), 0)
        self.delayDisplay("Cancelled job left no files and no nodes")

    @staticmethod
    def _sequence(browser, name):
        nodes = vtk.vtkCollection()
        browser.GetSynchronizedSequenceNodes(nodes, True)
        found = [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())
                 if nodes.GetItemAsObject(i).GetName() == name]
        return found[0] if found else None
