"""The interactive explorer and the upload page of the web app (ipywidgets views).

One explanation is computed by :func:`pneumo_lib.explanations.explain` (no widgets there):
the prediction by the project's rule (:mod:`pneumo_lib.decision`), the heatmap from
:mod:`pneumo_lib.cam` and the overlay from :func:`pneumo_lib.cam.overlay`. Two views show it:

* :class:`Explorer`, the chapter's widget: pick an image of the test split or of another
  source (:class:`ImageSource`, e.g. the 16 real Kaggle X-rays, :func:`real_sample_choice`),
  filtered by class and by correct or wrong prediction, or upload one; pick the model (models
  of different input sizes side by side, e.g. the phantom CNN and the real-data Xception
  classifier, :func:`reference_model_choice`), the CAM method, the target layer and the
  overlay opacity; the view updates in place.
  :meth:`Explorer.figure` draws the same view with matplotlib for the static book.
* :class:`AppView`, the page ``pneumo serve`` shows: upload a chest X-ray, get the
  prediction, its probability, the overlay and a download of the overlay.

Both show the **calibrated** P(PNEUMONIA) when the model card holds a fitted temperature
(``sigmoid(logit / T)``, :func:`pneumo_lib.explanations.explain`) and say on the result line
which it is ("calibrated: temperature scaling, T = 1.52" or "uncalibrated: the model card
holds no fitted temperature"); the predicted class is the one rule's
(:mod:`pneumo_lib.decision`), whatever is shown.

Below the result line, both say how unsure the model is about the image
(:attr:`pneumo_lib.explanations.Explanation.uncertainty`: the entropy of its probability at its
decision threshold, the measure of the chapter "How sure is the model?"), against the model's
referral level (stored in its card by ``pneumo evaluate --calibration --refer-fraction 0.1
--store-temperature``, else :data:`pneumo_lib.uncertainty.DEFAULT_REFERRAL_LEVEL`), and say which
level and where it came from. Above the level, the line is a flag (``pneumo-refer``) that starts
"Uncertain: refer to a radiologist" (:data:`REFERRAL_FLAG`); below it, a plain note
(``pneumo-certainty``). The predicted class stays on the result line either way.

Every upload is also checked for looking like a chest radiograph
(:func:`pneumo_lib.uploads.upload_radiograph_check`): one that does not (a 1 x 1 image,
noise, a colour photograph) gets a warning box above its result, "This does not look like a
chest X-ray", with the reasons, and its result line is dimmed; a multi-frame DICOM gets the
:class:`pneumo_lib.data.FramesWarning` (only the first frame is used) in the same box.

Three-class models (NORMAL, bacterial, viral; :mod:`pneumo_lib.three_classes`) go through the
same views: the result line gives the predicted class (the arg-max, no threshold), its
probability and all three ("bacterial (P = 0.64; NORMAL 0.35, bacterial 0.64, viral 0.01; ...)"),
the overlay explains the predicted class, and the page says that temperature scaling and the
referral flag, two-class notions, do not apply (:func:`decision_note`, :func:`referral_page_note`).
The explorer takes a three-class model among its models (:func:`three_class_model_choice`) and
image sets with three-class labels (``classes=THREE_CLASSES``, :func:`three_class_test_source`);
its "True class" filter lists the image set's classes, and a prediction is "correct" when it is
the true class (a two-class answer against three-class labels, or the reverse, is compared as
NORMAL versus pneumonia).

Both show results through :class:`ResultPane`, whose HTML carries stable CSS classes
(``pneumo-result``, ``pneumo-overlay``, ``pneumo-download``, ``pneumo-error``,
``pneumo-warning``, ``pneumo-refer``, ``pneumo-certainty``) that the browser test looks for. Uploads go through :mod:`pneumo_lib.uploads`. The pure
functions (:func:`explain`, :class:`Explanation`, :func:`probabilities`, :func:`png_bytes`,
:func:`layer_options`, :func:`explanation_figure`, :data:`METHODS`) live in
:mod:`pneumo_lib.explanations` and are importable from here too.
"""

from __future__ import annotations

import html
import os
import re
import warnings
from typing import Mapping, Sequence

import ipywidgets as W
import numpy as np

from pneumo_lib import decision, uncertainty, uploads
from pneumo_lib.data import CLASSES
from pneumo_lib.data.subtypes import THREE_CLASSES
from pneumo_lib.explanations import (DISPLAY_SIZE, METHODS, Explanation, data_uri, explain, explanation_figure,
                                     layer_options, png_bytes, probabilities)

__all__ = [
    "METHODS", "DISPLAY_SIZE", "Explanation", "explain", "probabilities", "png_bytes", "layer_options",
    "explanation_figure", "ResultPane", "AppView", "Explorer", "app_from_environment", "decision_note",
    "upload_warnings", "NOT_XRAY_WARNING", "upload_size_guard", "upload_size_guard_html", "REFERRAL_FLAG",
    "referral_page_note", "ImageSource", "real_sample_source", "real_sample_choice", "reference_model_choice", "TEST_SPLIT", "UPLOAD",
    "REAL_SAMPLE", "REFERENCE_CHOICE", "three_class_model_choice", "three_class_test_source", "THREE_CLASS_CHOICE",
    "THREE_CLASS_SOURCE", "THREE_CLASSES", "THREE_CLASS_DECISION_NOTE", "THREE_CLASS_REFERRAL_PAGE_NOTE",
    "check_class_names",
]

#: Widget style: labels as wide as their text (not cut to "CAM met...").
_STYLE = {"description_width": "initial"}
#: The heading of the warning an upload that fails :func:`pneumo_lib.uploads.radiograph_check` gets.
NOT_XRAY_WARNING = "This does not look like a chest X-ray"
#: The flag shown when the model's uncertainty about an image is above its referral level.
REFERRAL_FLAG = uncertainty.REFERRAL_FLAG
_REFER_STYLE = ("border:2px solid #b00020;background:#fdecee;color:#7a0016;padding:6px 10px;"
                "margin:4px 0;border-radius:4px")
_NOTICE_STYLE = ("border:3px solid #b00020;background:#fdecee;color:#7a0016;padding:10px 14px;"
                 "margin:6px 0;border-radius:4px;font-size:110%")
_WARNING_STYLE = ("border:2px solid #b26a00;background:#fff4e5;color:#5c3700;padding:6px 10px;"
                  "margin:4px 0;border-radius:4px")


def upload_warnings(not_xray: Sequence[str] = (), frames: Sequence[str] = ()) -> list[str]:
    """The warnings shown with an upload's result, as plain sentences (empty: none).

    Args:
        not_xray: Reasons from :func:`pneumo_lib.uploads.upload_radiograph_check` (empty:
            it looks like a chest radiograph). Any reason gives one warning that starts with
            :data:`NOT_XRAY_WARNING` and lists them all.
        frames: Messages of :class:`pneumo_lib.data.FramesWarning` (multi-frame DICOM: only
            the first frame is used), one warning each.

    Returns:
        Warnings in display order (the not-an-X-ray one first).
    """
    shown = []
    if not_xray:
        shown.append(f"{NOT_XRAY_WARNING}, so the model's answer below means nothing for it: "
                     + " ".join(str(r) for r in not_xray))
    shown.extend(str(f) for f in frames)
    return shown


class ResultPane(W.VBox):
    """Where an explanation (or an error) is shown: warnings, summary line, referral line, images, download link."""

    def __init__(self) -> None:
        self.warning = W.HTML()
        self.summary = W.HTML()
        self.referral = W.HTML()
        self.pictures = W.HTML()
        super().__init__([self.warning, self.summary, self.referral, self.pictures])
        # Found by the page's upload size guard (upload_size_guard_html), which replaces a
        # result with its message when it refuses a file in the browser.
        self.add_class("pneumo-pane")
        for part, name in ((self.warning, "warnings"), (self.summary, "summary"), (self.referral, "referral"),
                           (self.pictures, "pictures")):
            part.add_class(f"pneumo-{name}")

    def show(self, explanation: Explanation, name: str, detail: str = "", warnings: Sequence[str] = ()) -> None:
        """Show an explanation of the image called ``name`` (shown, HTML-escaped).

        Args:
            explanation: What :func:`explain` returned.
            name: The image's name as the user knows it.
            detail: Text appended to the result line (e.g. ``" (uploaded)"``).
            warnings: Sentences shown in a warning box (``pneumo-warning``) above the result
                (:func:`upload_warnings`); with any, the result line is dimmed
                (``pneumo-doubtful``).

        Below the result line, the referral line (:meth:`pneumo_lib.explanations.Explanation.referral_note`):
        a ``pneumo-refer`` flag, "Uncertain: refer to a radiologist. ...", when the model's
        uncertainty is above its referral level, else a ``pneumo-certainty`` note.
        """
        safe = html.escape(name)
        method = next(k for k, v in METHODS.items() if v == explanation.method)
        overlay = data_uri(png_bytes(explanation.overlay))
        download = f"{os.path.splitext(name)[0] or 'image'}-{explanation.method}.png"
        self.show_warnings(warnings)
        doubtful = ' pneumo-doubtful" style="opacity:0.55' if warnings else ""
        self.summary.value = (
            f'<div class="pneumo-result{doubtful}"><b>{safe}</b>: '
            f"{html.escape(explanation.summary(calibration=True))}{html.escape(detail)}</div>")
        note = html.escape(explanation.referral_note())
        if explanation.refer:
            flag = html.escape(REFERRAL_FLAG)
            self.referral.value = (f'<div class="pneumo-refer" role="alert" style="{_REFER_STYLE}">&#9873; '
                                   f'<b>{flag}.</b>{note[len(flag) + 1:]}</div>')
        else:
            self.referral.value = f'<div class="pneumo-certainty" style="color:#555;font-size:90%">{note}</div>'
        self.pictures.value = (
            '<div style="display:flex;gap:12px;flex-wrap:wrap">'
            f'<figure style="margin:0"><img class="pneumo-input" alt="model input: {safe}" '
            f'src="{data_uri(png_bytes(explanation.image))}"><figcaption>model input</figcaption></figure>'
            f'<figure style="margin:0"><img class="pneumo-overlay" alt="{method} overlay: {safe}" '
            f'src="{overlay}"><figcaption>{method}, explaining {explanation.explained_label}</figcaption></figure>'
            "</div>"
            f'<a class="pneumo-download" download="{html.escape(download)}" href="{overlay}">'
            "Download the overlay (PNG)</a>")

    def show_warnings(self, warnings: Sequence[str] = ()) -> None:
        """Show ``warnings`` (plain sentences, HTML-escaped) in the warning box; none: hide it."""
        self.warning.value = "".join(
            f'<div class="pneumo-warning" role="alert" style="{_WARNING_STYLE}">&#9888; {html.escape(w)}</div>'
            for w in warnings)

    @property
    def text(self) -> str:
        """The summary line as plain text (what a reader sees), e.g. for printing from code."""
        return html.unescape(re.sub(r"<[^>]+>", "", self.summary.value))

    @property
    def referral_text(self) -> str:
        """The referral line as plain text: the flag "Uncertain: refer to a radiologist. ..." or the
        uncertainty note (``""`` when no explanation is shown)."""
        return html.unescape(re.sub(r"<[^>]+>", "", self.referral.value)).replace("\u2691 ", "")

    @property
    def warning_text(self) -> str:
        """The warnings as plain text (``""`` when there are none)."""
        return html.unescape(re.sub(r"<[^>]+>", "", self.warning.value.replace("</div><div", "</div>\n<div")))

    def show_error(self, message: str) -> None:
        """Replace any result with a readable error message."""
        self.warning.value = self.referral.value = ""
        self.summary.value = f'<div class="pneumo-error" style="color:#b00020">{html.escape(message)}</div>'
        self.pictures.value = ""

    def show_note(self, text: str) -> None:
        """Replace any result with a neutral message (``pneumo-note``)."""
        self.warning.value = self.referral.value = ""
        self.summary.value = f'<div class="pneumo-note">{html.escape(text)}</div>'
        self.pictures.value = ""


_GUARD_SCRIPT = """<script>
(function () {
  if (window.pneumoUploadGuard) { window.pneumoUploadGuard.limit = %(limit)d; return; }
  var guard = window.pneumoUploadGuard = {limit: %(limit)d, button: null};
  function show(message) {
    var root = guard.button, pane = null;
    while (root && !(pane = root.querySelector('.pneumo-pane'))) { root = root.parentElement; }
    pane = pane || document.querySelector('.pneumo-pane');
    var summary = null;
    ['summary', 'warnings', 'referral', 'pictures'].forEach(function (k) {
      var el = pane && pane.querySelector('.pneumo-' + k + ' .widget-html-content');
      if (el) { el.innerHTML = ''; if (k === 'summary') { summary = el; } }
    });
    var box = document.createElement('div');
    box.className = 'pneumo-error pneumo-upload-refused';
    box.setAttribute('role', 'alert');
    box.style.color = '#b00020';
    box.textContent = message;
    if (summary) { summary.appendChild(box); } else { document.body.appendChild(box); }
  }
  function checkSize(event) {
    var input = event.target;
    var big = Array.prototype.filter.call(input.files || [], function (f) { return f.size > guard.limit; });
    if (!big.length) { return; }
    event.stopImmediatePropagation();  // the upload widget's own listener never reads or sends it
    var f = big[0], mb = (f.size / 1048576).toFixed(1);
    show('Could not explain ' + f.name + ': ' + f.name + ' is ' + mb + ' MB; the limit is ' +
         Math.round(guard.limit / 1048576) + ' MB. Downscale or compress the image first. ' +
         '(Refused in the browser: nothing was sent.)');
    input.value = '';
  }
  document.addEventListener('click', function (event) {
    var button = event.target && event.target.closest && event.target.closest('.widget-upload');
    if (button) { guard.button = button; }
  }, true);
  // The upload widget's file input is never attached to the page, so its change event cannot be
  // caught on the document: a capture listener is added to every file input the page opens
  // (capture listeners on the target run before the widget's own).
  var click = HTMLInputElement.prototype.click;
  HTMLInputElement.prototype.click = function () {
    if (this.type === 'file' && !this.pneumoGuarded) {
      this.pneumoGuarded = true;
      this.addEventListener('change', checkSize, true);
    }
    return click.apply(this, arguments);
  };
})();
</script>"""


def upload_size_guard_html(limit: int = uploads.MAX_UPLOAD_BYTES) -> str:
    """A ``<script>`` that refuses files over ``limit`` bytes in the browser, before sending them.

    Without it, a file larger than the server's websocket message limit (64 MiB,
    :data:`pneumo_lib.app.WEBSOCKET_MAX_BYTES`) never reaches the kernel: the connection
    drops and the page silently keeps the previous result. The script listens (capture
    phase, before the upload widget's own listener) for a file chosen in any file input the
    page opens; a file over ``limit`` is not read or sent, the input is reset, and the result pane
    (:class:`ResultPane`, CSS class ``pneumo-pane``) is replaced by a ``pneumo-error``
    message in the words the kernel uses ("<name> is 21.0 MB; the limit is 20 MB ...").
    Smaller files pass untouched. The app notebook displays it once (Voila renders the
    notebook's outputs as trusted, so the script runs); displaying it again only updates the limit.

    Args:
        limit: Largest file accepted, in bytes (default :data:`pneumo_lib.uploads.MAX_UPLOAD_BYTES`).

    Returns:
        The HTML text.

    Raises:
        ValueError: ``limit`` is not a positive integer.
    """
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"limit must be a positive number of bytes, got {limit!r}.")
    return _GUARD_SCRIPT % {"limit": int(limit)}


def upload_size_guard(limit: int = uploads.MAX_UPLOAD_BYTES):
    """:func:`upload_size_guard_html` as an ``IPython.display.HTML`` object, for ``display(...)``."""
    from IPython.display import HTML

    return HTML(upload_size_guard_html(limit))


def _method_picker() -> W.Dropdown:
    return W.Dropdown(options=list(METHODS.items()), value="grad_cam", description="CAM method",
                       style=_STYLE)


def _opacity_slider(alpha: float) -> W.FloatSlider:
    return W.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="Opacity",
                         continuous_update=False, readout_format=".2f", style=_STYLE)


def _upload_button() -> W.FileUpload:
    limit = uploads.MAX_UPLOAD_BYTES / 2**20
    return W.FileUpload(accept=uploads.ACCEPT, multiple=False,
                        description=f"Upload X-ray (JPEG/PNG/DICOM, max {limit:.0f} MB)",
                        layout=W.Layout(width="auto"))


def _input_shape(model) -> tuple[int, int]:
    """``(S, C)``: side and channels of a model's square input."""
    shape = model.input_shape
    return int(shape[1]), int(shape[-1])


class _ExplainerView(W.VBox):
    """What the explorer and the app share: the current image, its explanation and redraws.

    Subclasses set ``self.method``, ``self.opacity``, ``self.result``, ``self.upload`` and
    implement :meth:`_model` and :meth:`_layer`; any change of method, opacity, model or
    layer redraws the current image in place.
    """

    def _setup(self, threshold: float | None) -> None:
        self.threshold = None if threshold is None else decision.check_threshold(threshold)
        #: The warnings of the last upload (:func:`upload_warnings`), empty for test-split images.
        self.warnings: list[str] = []
        self.current: Explanation | None = None
        self._image: tuple[str, np.ndarray, str, tuple[str, ...]] | None = None
        self.upload.observe(self._on_upload, names="value")
        for control in (self.method, self.opacity):
            control.observe(self._redraw, names="value")

    def _model(self):
        raise NotImplementedError

    def _layer(self) -> str | None:
        return None

    def decision_threshold(self) -> float | None:
        """The threshold the view decides with: the one given, else the current model's
        (:func:`pneumo_lib.decision.model_threshold`: its card's, else 0.5); ``None`` for a
        three-class model (it predicts the arg-max)."""
        if decision.model_classes(self._model()) == 3:
            return None
        return decision.model_threshold(self._model(), self.threshold)

    def show_image(self, name: str, image: np.ndarray, detail: str = "",
                   warnings: Sequence[str] = ()) -> Explanation | None:
        """Explain ``image`` (``float32 (S, S, C)`` in ``[0, 1]``) and show it as ``name``.

        ``warnings`` (plain sentences) are shown above the result, and again on every redraw.

        Returns:
            The explanation, or ``None`` if it failed (the error is shown instead).
        """
        self._image = (name, image, detail, tuple(warnings))
        self.warnings = list(warnings)
        return self._redraw()

    def explain_upload(self, upload: uploads.Upload) -> Explanation | None:
        """Read, check, explain and show an upload; a refused or unreadable one shows an error.

        The upload is read as the pipeline reads a file (:func:`pneumo_lib.uploads.read_upload`)
        and checked with :func:`pneumo_lib.uploads.upload_radiograph_check`; an upload that
        does not look like a chest X-ray, or a multi-frame DICOM (its
        :class:`pneumo_lib.data.FramesWarning`), is explained with a warning above the result
        (:func:`upload_warnings`; the warnings are in :attr:`warnings`).

        Returns:
            The explanation, or ``None`` when the upload was refused (the page says why).
        """
        from pneumo_lib.data import FramesWarning

        self.result.show_note(f"Explaining {upload.name}...")
        self._image = self.current = None
        self.warnings = []
        try:
            size, channels = _input_shape(self._model())
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", FramesWarning)
                image = uploads.read_upload(upload, size, channels)
            frames = [str(w.message) for w in caught if issubclass(w.category, FramesWarning)]
            for w in caught:
                if not issubclass(w.category, FramesWarning):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            not_xray = uploads.upload_radiograph_check(upload)
        except uploads.UploadError as err:
            self.result.show_error(f"Could not explain {upload.name}: {err}")
            return None
        except Exception as err:  # keep serving, whatever the file did
            self.result.show_error(f"Could not explain {upload.name}: unexpected {type(err).__name__}: {err}")
            return None
        self.warnings = upload_warnings(not_xray, frames)
        return self.show_image(upload.name, image, " (uploaded)", self.warnings)

    def _redraw(self, change=None) -> Explanation | None:
        if self._image is None:
            return None
        name, image, detail, shown_warnings = self._image
        if self.method.value == "score_cam":  # sent to the page at once, replaced by the result
            self.result.show_note(f"Computing Score-CAM for {name}: one forward pass of the model per feature "
                                  "channel, which takes minutes on a CPU for a large network such as Xception "
                                  "(2048 channels); Grad-CAM takes about a second.")
        try:
            self.current = explain(self._model(), image, method=self.method.value, layer=self._layer(),
                                   alpha=self.opacity.value, threshold=self.decision_threshold())
        except Exception as err:
            self.current = None
            self.result.show_error(f"Could not explain {name}: {type(err).__name__}: {err}")
            return None
        self.result.show(self.current, name, detail, shown_warnings)
        return self.current

    def _on_upload(self, change) -> None:
        upload = uploads.Upload.from_widget(change["new"])
        if upload is not None:
            self.explain_upload(upload)
            self.upload.value = ()  # drop the bytes from the kernel (and allow the same file again)


class AppView(_ExplainerView):
    """The web app's page: upload a chest X-ray; see the prediction, its probability, the overlay.

    Args:
        model: The model that answers: a Keras classifier taking ``[0, 1]`` images
            ``(N, S, S, C)`` (built by :mod:`pneumo_lib.models`, or the real-data reference
            classifier of :mod:`pneumo_lib.pretrained`).
        note: Sentences saying on the page which model this is (``pneumo-model-note``).
        notice: A warning shown prominently above the upload button (``pneumo-model-notice``,
            e.g. :data:`pneumo_lib.app.PHANTOM_NOTICE`); ``""``: none.
        threshold: Probability at or above which the answer is PNEUMONIA; None: the model's
            (its card's validation threshold when loaded by :func:`pneumo_lib.training.load_model`,
            else 0.5). A three-class model (NORMAL, bacterial, viral) has none: its answer is
            the most probable class.
        alpha: Initial overlay opacity.

    Raises:
        ValueError: A model whose output is not 1, 2 or 3 units, or a threshold for a three-class model.
    """

    def __init__(self, model, note: str = "", *, notice: str = "", threshold: float | None = None,
                 alpha: float = 0.4) -> None:
        if decision.model_classes(model) == 3 and threshold is not None:
            raise ValueError(f"threshold={threshold!r} does not apply to a three-class model (NORMAL, bacterial, "
                             "viral): its answer is the arg-max of its probabilities.")
        self.model = model
        self.upload = _upload_button()
        self.method = _method_picker()
        self.opacity = _opacity_slider(alpha)
        self.result = ResultPane()
        parts = []
        if notice:
            parts.append(W.HTML(f'<div class="pneumo-model-notice" role="alert" style="{_NOTICE_STYLE}">'
                                f'&#9888; <b>{html.escape(notice)}</b></div>'))
        parts.append(W.HTML(f'<p class="pneumo-model-note"><i>{html.escape(note)}</i></p>'))
        super().__init__([*parts, self.upload, W.HBox([self.method, self.opacity]), self.result])
        self._setup(threshold)

    def _model(self):
        return self.model


def app_from_environment() -> AppView:
    """The app page for the model ``pneumo serve`` chose (see :mod:`pneumo_lib.app`).

    Reads the model path, the note and the notice from the environment variables
    :data:`pneumo_lib.app.MODEL_ENV`, :data:`pneumo_lib.app.NOTE_ENV` and
    :data:`pneumo_lib.app.NOTICE_ENV`; without them (the notebook opened directly) it uses
    :func:`pneumo_lib.app.served_model` (the real-data classifier, else the phantom CNN with its
    notice). The model is loaded in Keras safe mode and a blank upload is read and explained
    once, so that the first real upload does not pay TensorFlow's start-up costs.
    """
    from pneumo_lib import app, training

    path, note = os.environ.get(app.MODEL_ENV), os.environ.get(app.NOTE_ENV, "")
    notice = os.environ.get(app.NOTICE_ENV, "")
    if not path:
        chosen = app.served_model()
        path, note, notice = chosen.path, chosen.note, chosen.notice
    model = training.load_model(path)
    size, channels = _input_shape(model)
    # Warm-up: one upload's whole path (decode, resize, radiograph check, CAM, PNG), so the
    # visitor's first upload does not pay TensorFlow's and the decoders' first-call costs.
    blank = uploads.Upload("warm-up.png", png_bytes(np.full((size * 2, size * 2), 0.5, np.float32), size * 2))
    uploads.upload_radiograph_check(blank)
    png_bytes(explain(model, uploads.read_upload(blank, size, channels)).overlay)
    threshold = app.decision_threshold(path) if decision.model_classes(model) == 2 else None
    note += " " + decision_note(model, threshold) + " " + referral_page_note(model)
    return AppView(model, note, notice=notice, threshold=threshold)


#: The page's decision sentences for a three-class model (:func:`decision_note`).
THREE_CLASS_DECISION_NOTE = (
    "Three classes (NORMAL, bacterial, viral): the answer is the class with the highest of the three "
    "probabilities, shown with all three; there is no decision threshold. Probabilities are uncalibrated: "
    "temperature scaling is a two-class notion here, so no temperature applies.")
#: The page's referral sentence for a three-class model (:func:`referral_page_note`).
THREE_CLASS_REFERRAL_PAGE_NOTE = (
    "No image is flagged for a radiologist's reading: the referral level (entropy at the decision "
    "threshold) is a two-class notion and does not apply to a three-class model.")


def decision_note(model, threshold: float | None = None) -> str:
    """The sentences the app's page shows about the model's decision threshold and calibration.

    Args:
        model: The served model (its temperature: :func:`pneumo_lib.decision.model_temperature`).
        threshold: The decision threshold on the model's own probability, in (0, 1); None:
            the model's (:func:`pneumo_lib.decision.model_threshold`).

    Returns:
        Without a fitted temperature: ``"Decision threshold: probability of pneumonia >= 0.50.
        Probabilities are uncalibrated (not calibrated: the model card holds no fitted temperature)."``. With
        one, the threshold on the calibrated scale (the same decisions,
        :func:`pneumo_lib.decision.calibrated_threshold`), the card's threshold and ``T``.
        A three-class model: :data:`THREE_CLASS_DECISION_NOTE` (the arg-max; no threshold, no
        temperature).

    Raises:
        ValueError: A threshold given for a three-class model, or a model whose output is not
            1, 2 or 3 units.
    """
    if decision.model_classes(model) == 3:
        if threshold is not None:
            raise ValueError(f"threshold={threshold!r} does not apply to a three-class model: it predicts the "
                             "arg-max of its probabilities.")
        return THREE_CLASS_DECISION_NOTE
    cut = decision.model_threshold(model, threshold)
    T = decision.model_temperature(model)
    if T == decision.DEFAULT_TEMPERATURE:
        return (f"Decision threshold: probability of pneumonia >= {cut:.2f}. "
                "Probabilities are uncalibrated (not calibrated: the model card holds no fitted temperature).")
    shown = decision.calibrated_threshold(model, cut)
    return (f"Decision threshold: calibrated probability of pneumonia >= {shown:.2f} "
            f"({cut:.2f} before calibration, chosen on the validation split). Probabilities are "
            f"calibrated by temperature scaling (T = {T:.2f}, fitted on the validation split).")


def referral_page_note(model) -> str:
    """The sentence the app's page shows about the referral level, e.g.
    ``"Images whose uncertainty (entropy at the decision threshold) is above 0.81 bits are flagged
    for a radiologist's reading (referral level 0.81 bits: the default ...); the class is shown
    either way."``

    A three-class model: :data:`THREE_CLASS_REFERRAL_PAGE_NOTE` (no referral level applies).

    Args:
        model: The served model (its referral level: :func:`pneumo_lib.uncertainty.model_referral_level`).
    """
    if decision.model_classes(model) == 3:
        return THREE_CLASS_REFERRAL_PAGE_NOTE
    level = uncertainty.model_referral_level(model)
    return (f"Images whose uncertainty (entropy at the decision threshold) is above {level.level:.2f} bits are "
            f"flagged for a radiologist's reading ({level.note()}); the class is shown either way.")


#: The explorer's name for the test split it is given (a value of :attr:`Explorer.source`).
TEST_SPLIT = "Test split"
#: The explorer's name for uploads (a value of :attr:`Explorer.source`).
UPLOAD = "Upload"
#: The source name :func:`real_sample_source` is meant to be shown under.
REAL_SAMPLE = "16 real Kaggle X-rays"
#: The display name :func:`reference_model_choice` gives the real-data classifier.
REFERENCE_CHOICE = "real-data Xception (reference)"
#: The display name :func:`three_class_model_choice` gives the three-class CNN.
THREE_CLASS_CHOICE = "three-class CNN (NORMAL, bacterial, viral)"
#: The source name :func:`three_class_test_source` is meant to be shown under.
THREE_CLASS_SOURCE = "Test split, three classes"


def check_class_names(classes) -> tuple[str, ...]:
    """``classes`` as a tuple of label names: :data:`pneumo_lib.data.CLASSES` (NORMAL, PNEUMONIA)
    or :data:`THREE_CLASSES` (NORMAL, bacterial, viral); ``None`` means the two classes.

    Raises:
        ValueError: Anything else (named).
    """
    if classes is None:
        return CLASSES
    names = tuple(str(c) for c in classes) if not isinstance(classes, str) else (classes,)
    if names not in (CLASSES, THREE_CLASSES):
        raise ValueError(f"classes must be {CLASSES} or {THREE_CLASSES} (label order), got {classes!r}.")
    return names


def _check_labels(labels: np.ndarray, classes: tuple[str, ...], what: str) -> None:
    bad = sorted(set(labels.tolist()) - set(range(len(classes))))
    if bad:
        hint = (" Three-class labels (0 NORMAL, 1 bacterial, 2 viral) need classes=THREE_CLASSES."
                if classes == CLASSES and set(bad) <= {2} else "")
        raise ValueError(f"{what}: labels must be in 0..{len(classes) - 1} ({', '.join(classes)}); "
                         f"found {bad[:6]}.{hint}")


def _correct(predicted: np.ndarray, n_predicted: int, labels: np.ndarray, n_labels: int) -> np.ndarray:
    """Which predictions are right: label for label when the model's classes are the labels';
    otherwise (two-class model, three-class labels or the reverse) as NORMAL versus pneumonia."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if n_predicted == n_labels:
        return predicted == labels
    return (predicted > 0) == (labels > 0)


class ImageSource:
    """Labelled images the explorer can show: an array, image files, or both.

    Args:
        labels: True labels ``(N,)``, 0 = NORMAL, 1 = PNEUMONIA (or, with three ``classes``,
            0 = NORMAL, 1 = bacterial, 2 = viral).
        names: File names shown, default ``"image <i>"``.
        images: ``float32 (N, S, S, C)`` in ``[0, 1]``, used for models taking ``(S, S, C)``.
        paths: The image files (JPEG, PNG, DICOM), read as the pipeline reads them
            (:func:`pneumo_lib.data.load_images`) at the input size of any other model.
        classes: The labels' names (:func:`check_class_names`): ``None`` or
            :data:`pneumo_lib.data.CLASSES` (two classes), or :data:`THREE_CLASSES`.

    Raises:
        ValueError: Neither images nor paths, lengths that differ, unknown ``classes`` or
            labels outside them.
    """

    def __init__(self, labels: Sequence[int], names: Sequence[str] | None = None, *,
                 images: np.ndarray | None = None, paths: Sequence[str | os.PathLike] | None = None,
                 classes: Sequence[str] | None = None) -> None:
        self.labels = np.asarray(labels).astype(int).reshape(-1)
        #: The label names, in label order.
        self.classes: tuple[str, ...] = check_class_names(classes)
        _check_labels(self.labels, self.classes, "An image source")
        self.images = None if images is None else np.asarray(images, dtype=np.float32)
        self.paths = None if paths is None else [os.fspath(p) for p in paths]
        self.names = [str(n) for n in names] if names is not None else (
            [os.path.basename(p) for p in self.paths] if self.paths is not None
            else [f"image {i}" for i in range(len(self.labels))])
        self._read: dict[tuple[int, int], np.ndarray] = {}
        if self.images is None and self.paths is None:
            raise ValueError("An image source needs images or paths.")
        sizes = {"labels": len(self.labels), "names": len(self.names)}
        if self.images is not None:
            if self.images.ndim != 4:
                raise ValueError(f"Expected images (N, S, S, C), got shape {self.images.shape}.")
            sizes["images"] = len(self.images)
        if self.paths is not None:
            sizes["paths"] = len(self.paths)
        if len(set(sizes.values())) != 1:
            raise ValueError("An image source needs as many labels, names, images and paths; got "
                             + ", ".join(f"{n} {k}" for k, n in sizes.items()) + ".")

    def __len__(self) -> int:
        return len(self.labels)

    def fits(self, shape: tuple) -> bool:
        """Whether it can give images of ``shape`` ``(S, S, C)``: its array has that shape, or it has files."""
        return self.paths is not None or (self.images is not None and self.images.shape[1:] == tuple(shape))

    def for_input(self, size: int, channels: int) -> np.ndarray:
        """The images as ``float32 (N, size, size, channels)`` in ``[0, 1]`` (files read once per shape).

        Raises:
            ValueError: The array has another shape and there are no files to read.
        """
        if self.images is not None and self.images.shape[1:] == (size, size, channels):
            return self.images
        if self.paths is None:
            raise ValueError(f"These images are {self.images.shape[1:]}, not ({size}, {size}, {channels}), "
                             "and no files were given to read them at that size.")
        key = (int(size), int(channels))
        if key not in self._read:
            from pneumo_lib import data

            self._read[key] = data.load_images(self.paths, size, channels)
        return self._read[key]

    def image(self, index: int, size: int, channels: int) -> np.ndarray:
        """Image ``index`` as ``float32 (size, size, channels)`` in ``[0, 1]``; only that file is
        read when the whole set has not been read at that shape yet (:meth:`for_input`)."""
        if (self.images is not None and self.images.shape[1:] == (size, size, channels)) or (
                (int(size), int(channels)) in self._read):
            return self.for_input(size, channels)[index]
        if self.paths is None:
            return self.for_input(size, channels)[index]  # raises: another shape, no files
        from pneumo_lib import data

        return data.load_images([self.paths[index]], size, channels)[0]


def real_sample_source() -> ImageSource:
    """The 16 real Kaggle X-rays (:func:`pneumo_lib.data.ensure_sample`: 8 NORMAL, 8 PNEUMONIA, from
    the Kaggle validation folder) as an explorer source, read at each model's input size.

    Raises:
        pneumo_lib.data.sample.SampleError: Not cached and pip cannot fetch them (the message says what to do).
    """
    from pathlib import Path

    from pneumo_lib import data

    root = data.ensure_sample()
    records = data.list_images(root, splits=("val",), check=False)
    return ImageSource([r.label for r in records], [Path(r.path).name for r in records],
                       paths=[root / r.path for r in records])


def real_sample_choice() -> dict[str, ImageSource]:
    """``{REAL_SAMPLE: real_sample_source()}`` for an explorer's ``sources``; ``{}`` when the 16 real
    X-rays cannot be had (offline and not cached), after printing one line saying so."""
    from pneumo_lib.data import sample

    try:
        return {REAL_SAMPLE: real_sample_source()}
    except sample.SampleError as err:
        print(f"The 16 real Kaggle X-rays are left out of the explorer: {err}")
        return {}


def reference_model_choice(*, fetch: bool = True) -> dict[str, object]:
    """``{REFERENCE_CHOICE: model}``: the classifier trained on the real Kaggle X-rays
    (:func:`pneumo_lib.pretrained.load_reference_model`, ``[0, 1]`` inputs ``(N, 150, 150, 3)``),
    ready to add to an explorer's models; ``{}`` when it cannot be had (offline), after printing
    one line saying so, so a chapter runs on without it.
    """
    from pneumo_lib import pretrained

    try:
        return {REFERENCE_CHOICE: pretrained.load_reference_model(fetch=fetch).model}
    except (pretrained.PretrainedUnavailable, pretrained.IntegrityError) as err:
        print(f"The real-data reference classifier is left out of the explorer: {err}")
        return {}


def three_class_model_choice(profile="quick", name: str = "paper_cnn") -> dict[str, object]:
    """``{THREE_CLASS_CHOICE: model}``: the profile's three-class CNN (softmax over NORMAL, bacterial,
    viral; :func:`pneumo_lib.three_classes.cached_training`, trained once and then loaded from the
    model cache), ready to add to an explorer's models beside the two-class ones.

    Args:
        profile: A profile name or :class:`pneumo_lib.profiles.Profile` (the chapters' ``profile``).
        name: The architecture (:data:`pneumo_lib.models.MODEL_NAMES`); the quick profile trains
            ``"paper_cnn"`` in about a minute.

    Returns:
        One entry; the model takes ``[0, 1]`` images ``(N, S, S, C)`` at the profile's image size
        and outputs ``(N, 3)`` probabilities.
    """
    from pneumo_lib import three_classes

    return {THREE_CLASS_CHOICE: three_classes.cached_training(name, profile).model}


def three_class_test_source(profile="quick") -> ImageSource:
    """The test split of the profile's three-class split (:func:`pneumo_lib.data.subtypes.three_class_split`
    of ``data.ensure_dataset(profile)`` with the profile's seed, as the three-class models are
    evaluated) as an explorer source: true labels 0 = NORMAL, 1 = bacterial, 2 = viral,
    read from its files at each model's input size. Offer it under :data:`THREE_CLASS_SOURCE`.
    """
    from pneumo_lib import data
    from pneumo_lib.data.subtypes import three_class_split
    from pneumo_lib.profiles import Profile, get_profile

    P = profile if isinstance(profile, Profile) else get_profile(profile)
    split = three_class_split(data.ensure_dataset(P), seed=P.seed)
    return ImageSource(split.labels("test"), paths=split.paths("test"), classes=THREE_CLASSES)


class Explorer(_ExplainerView):
    """The chapter's explorer: test-split images, other image sources or uploads; models, CAM methods,
    layers, opacity.

    Args:
        models: The models to choose from, by display name (or a single model). Each takes
            ``[0, 1]`` images; a model whose input is not the images' ``(S, S, C)`` needs the
            test split's files (``paths``) so they can be read at its input size.
        images: The test split, ``float32 (N, S, S, C)`` in ``[0, 1]``.
        labels: Their true labels ``(N,)``, 0 = NORMAL, 1 = PNEUMONIA (with ``classes=THREE_CLASSES``:
            0 = NORMAL, 1 = bacterial, 2 = viral, e.g. ``three_class_split(...).labels("test")``).
        names: Their file names (shown), default ``"test image <i>"``.
        threshold: Probability at or above which the prediction is PNEUMONIA: one for every model,
            or a mapping from model name to threshold; None (or a model left out of the mapping):
            each model's own (:func:`pneumo_lib.decision.model_threshold`). Three-class models
            have none (they predict the arg-max): a single threshold applies to the two-class
            models only, and a mapping may not name a three-class model.
        alpha: Initial overlay opacity.
        paths: The test split's files (optional), for models of another input size.
        sources: More image sets by display name (:class:`ImageSource`, e.g.
            ``{REAL_SAMPLE: real_sample_source()}`` or ``{THREE_CLASS_SOURCE: three_class_test_source()}``),
            offered beside :data:`TEST_SPLIT` and :data:`UPLOAD` in :attr:`source`.
        classes: The names of ``labels`` (:func:`check_class_names`): ``None`` (NORMAL, PNEUMONIA)
            or :data:`THREE_CLASSES`.

    Models may be two-class (one sigmoid unit or two softmax units) or three-class (NORMAL,
    bacterial, viral, e.g. :func:`three_class_model_choice`).

    Raises:
        ValueError: No model, images and labels of different lengths, a model whose input
            shape is not the images' ``(S, S, C)`` when there are no files to read, a model
            whose output is not 1, 2 or 3 units, labels outside ``classes``, a threshold
            mapping naming a three-class model, or a source name that is taken.
    """

    def __init__(self, models, images: np.ndarray, labels: Sequence[int], names: Sequence[str] | None = None,
                 *, threshold: float | Mapping[str, float] | None = None, alpha: float = 0.4,
                 paths: Sequence[str | os.PathLike] | None = None,
                 sources: Mapping[str, ImageSource] | None = None,
                 classes: Sequence[str] | None = None) -> None:
        self.models: dict[str, object] = dict(models) if isinstance(models, Mapping) else {"model": models}
        self.images = np.asarray(images, dtype=np.float32)
        self.labels = np.asarray(labels).astype(int).reshape(-1)
        self.names = [str(n) for n in names] if names is not None else [
            f"test image {i}" for i in range(len(self.images))]
        self.classes: tuple[str, ...] = check_class_names(classes)
        self._check(paths)
        _check_labels(self.labels, self.classes, "Explorer")
        extra = dict(sources or {})
        for name, src in extra.items():
            if name in (TEST_SPLIT, UPLOAD) or not isinstance(src, ImageSource):
                raise ValueError(f"Source {name!r}: expected an ImageSource under a name other than "
                                 f"{TEST_SPLIT!r} and {UPLOAD!r}.")
            for model_name, model in self.models.items():
                if not src.fits(tuple(model.input_shape[1:])):
                    raise ValueError(f"Model {model_name!r} takes inputs {tuple(model.input_shape[1:])}, but the "
                                     f"images of source {name!r} are {src.images.shape[1:]} and it has no files.")
        #: The image sets by name, the test split first.
        self.sources: dict[str, ImageSource] = {
            TEST_SPLIT: ImageSource(self.labels, self.names, images=self.images, paths=paths, classes=self.classes),
            **extra}
        self._thresholds = {k: decision.check_threshold(v) for k, v in threshold.items()} if isinstance(
            threshold, Mapping) else {}
        unknown = set(self._thresholds) - set(self.models)
        if unknown:
            raise ValueError(f"Thresholds given for unknown models {sorted(unknown)}; the models are {list(self.models)}.")
        three = sorted(k for k in self._thresholds if decision.model_classes(self.models[k]) == 3)
        if three:
            raise ValueError(f"Thresholds given for three-class models {three}: a three-class model (NORMAL, "
                             "bacterial, viral) has no threshold, it predicts the arg-max of its probabilities.")
        self._probabilities: dict[tuple[str, str], np.ndarray] = {}
        self._set_name = TEST_SPLIT
        self._last_upload: uploads.Upload | None = None
        self.source = W.ToggleButtons(options=[*self.sources, UPLOAD], description="Image from",
                                      style=_STYLE)
        self.true_class = W.Dropdown(options=self._class_options(self.classes),
                                     description="True class", style=_STYLE)
        self.outcome = W.Dropdown(options=[("any", None), ("correct", True), ("wrong", False)],
                                  description="Prediction", style=_STYLE)
        self.picker = W.Dropdown(description="Image", layout=W.Layout(width="auto"), style=_STYLE)
        self.upload = _upload_button()
        self.model = W.Dropdown(options=list(self.models), description="Model", style=_STYLE)
        self.layer = W.Dropdown(description="Layer", style=_STYLE)
        self.method = _method_picker()
        self.opacity = _opacity_slider(alpha)
        self.result = ResultPane()
        self._test_controls = W.VBox([W.HBox([self.true_class, self.outcome]), self.picker])
        super().__init__([
            W.HBox([self.model, self.method]), W.HBox([self.layer, self.opacity]),
            self.source, self._test_controls, self.upload, self.result])
        self._setup(None if isinstance(threshold, Mapping) else threshold)
        self.upload.layout.display = "none"
        self.layer.observe(self._redraw, names="value")
        self._layers_for_model()
        self.source.observe(self._source_changed, names="value")
        for control in (self.true_class, self.outcome):
            control.observe(self._refilter, names="value")
        self.picker.observe(self._picked, names="value")
        self.model.observe(self._model_changed, names="value")
        self._refilter()

    def _check(self, paths) -> None:
        if not self.models:
            raise ValueError("Explorer needs at least one model.")
        if self.images.ndim != 4 or len(self.images) != len(self.labels) or len(self.names) != len(self.labels):
            raise ValueError(
                f"Explorer needs images (N, S, S, C) with N labels and N names; got images "
                f"{self.images.shape}, {len(self.labels)} labels, {len(self.names)} names.")
        if paths is not None and len(paths) != len(self.labels):
            raise ValueError(f"Explorer got {len(paths)} paths for {len(self.labels)} test images.")
        for name, model in self.models.items():
            decision.model_classes(model)  # a 4-unit model is named here, not on the first prediction
            shape = tuple(model.input_shape[1:])
            if len(shape) != 3 or shape[0] != shape[1] or shape[0] is None:
                raise ValueError(f"Model {name!r} takes inputs {shape}; the explorer needs square images (S, S, C).")
            if shape != self.images.shape[1:] and paths is None:
                raise ValueError(
                    f"Model {name!r} takes inputs {shape}, but the images "
                    f"are {self.images.shape[1:]}; give the test split's files with paths= to read "
                    "them at its input size.")

    def _model(self):
        return self.models[self.model.value]

    def _layer(self) -> str | None:
        return self.layer.value or None

    @staticmethod
    def _class_options(classes: tuple[str, ...]) -> list:
        return [("any", None), *((name, k) for k, name in enumerate(classes))]

    def decision_threshold(self) -> float | None:
        """The threshold the view decides with for the current model: the one given (for all
        models, or for this one by name), else the model's (:func:`pneumo_lib.decision.model_threshold`);
        ``None`` for a three-class model (it predicts the arg-max)."""
        if decision.model_classes(self._model()) == 3:
            return None
        given = self._thresholds.get(self.model.value, self.threshold)
        return decision.model_threshold(self._model(), given)

    @property
    def image_set(self) -> ImageSource:
        """The image set the picker shows: the selected source, or the last one before "Upload"."""
        return self.sources[self._set_name]

    def _inputs(self) -> np.ndarray:
        return self.image_set.for_input(*_input_shape(self._model()))

    def probabilities(self) -> np.ndarray:
        """P(PNEUMONIA) of the selected model for every image of the current set (:attr:`image_set`,
        the test split unless another source is selected), ``(N,)`` in ``[0, 1]`` (cached); for a
        three-class model its three probabilities, ``(N, 3)`` (P(NORMAL), P(bacterial), P(viral)).
        """
        key = (self.model.value, self._set_name)
        if key not in self._probabilities:
            self._probabilities[key] = probabilities(self._model(), self._inputs())
        return self._probabilities[key]

    def predicted(self) -> np.ndarray:
        """The selected model's predicted label for every image of the current set, ``int64 (N,)``
        (:func:`pneumo_lib.decision.predicted_labels`: its threshold for two classes, the arg-max for three)."""
        return decision.predicted_labels(self.probabilities(), self.decision_threshold())

    def shown(self) -> list[int]:
        """Indices of the current set's images that pass the class and outcome filters.

        A prediction is correct when it is the true class; when the model's classes are not the
        image set's (two against three), when both agree on NORMAL versus pneumonia.
        """
        src = self.image_set
        labels = src.labels
        keep = np.ones(len(labels), bool)
        if self.true_class.value is not None:
            keep &= labels == self.true_class.value
        if self.outcome.value is not None:
            correct = _correct(self.predicted(), decision.model_classes(self._model()), labels, len(src.classes))
            keep &= correct == self.outcome.value
        return [int(i) for i in np.flatnonzero(keep)]

    def select(self, index: int, source: str | None = None) -> Explanation | None:
        """Show image ``index`` of ``source`` (default: the test split; clears the filters if they hide it).

        Raises:
            ValueError: Unknown source, or an index outside it.
        """
        source = TEST_SPLIT if source is None else source
        if source not in self.sources:
            raise ValueError(f"Unknown source {source!r}; the sources are {list(self.sources)}.")
        if not 0 <= int(index) < len(self.sources[source]):
            raise ValueError(f"Image {index} is outside {source!r}, which holds {len(self.sources[source])} images.")
        if self.source.value != source:
            self.source.value = source
        if index not in self.shown():
            self.true_class.value = self.outcome.value = None
        if self.picker.value == index:
            return self._picked()
        self.picker.value = index
        return self.current

    def _refilter(self, change=None) -> None:
        indices = self.shown()
        src = self.image_set
        keep = self.picker.value if self.picker.value in indices else (indices[0] if indices else None)
        self.picker.unobserve(self._picked, names="value")
        self.picker.options = [(f"{src.names[i]} (true: {src.classes[src.labels[i]]})", i) for i in indices]
        self.picker.value = keep
        self.picker.observe(self._picked, names="value")
        if indices:
            self._picked()
        elif self.source.value != UPLOAD:
            self._image = self.current = None
            self.result.show_error("No image matches these filters." if self._set_name != TEST_SPLIT
                                   else "No test image matches these filters.")

    def _picked(self, change=None) -> Explanation | None:
        index = self.picker.value
        if index is None or self.source.value == UPLOAD:
            return None
        src = self.image_set
        image = src.image(index, *_input_shape(self._model()))
        key = (self.model.value, self._set_name)
        # One image shown needs one prediction: the whole set's only when a filter asks (shown()).
        p = self._probabilities[key][index:index + 1] if key in self._probabilities else probabilities(
            self._model(), image[None])
        predicted = decision.predicted_labels(p, self.decision_threshold())
        correct = _correct(predicted, decision.model_classes(self._model()), src.labels[index:index + 1],
                           len(src.classes))[0]
        detail = f"; true class {src.classes[src.labels[index]]}, {'correct' if correct else 'wrong'}"
        return self.show_image(src.names[index], image, detail)

    def _source_changed(self, change) -> None:
        from_set = change["new"] != UPLOAD
        self._test_controls.layout.display = None if from_set else "none"
        self.upload.layout.display = "none" if from_set else None
        if from_set:
            self._set_name = change["new"]
            options = self._class_options(self.image_set.classes)
            if list(self.true_class.options) != options:  # another set of classes: its own names
                self.true_class.unobserve(self._refilter, names="value")
                self.true_class.options = options
                self.true_class.value = None
                self.true_class.observe(self._refilter, names="value")
            self.picker.unobserve(self._picked, names="value")
            self.picker.value = None
            self.picker.observe(self._picked, names="value")
            self._refilter()
        else:
            self._image = self.current = None
            self._last_upload = None
            self.result.show_note("Upload a chest X-ray (JPEG, PNG or DICOM).")

    def explain_upload(self, upload: uploads.Upload) -> Explanation | None:
        """As :meth:`_ExplainerView.explain_upload`; the upload is kept, so choosing another
        model reads it again at that model's input size."""
        self._last_upload = upload
        return super().explain_upload(upload)

    def _layers_for_model(self) -> None:
        self.layer.unobserve(self._redraw, names="value")
        self.layer.options = layer_options(self._model())
        self.layer.value = ""
        self.layer.observe(self._redraw, names="value")

    def _model_changed(self, change) -> None:
        self._layers_for_model()
        if self.source.value == UPLOAD:
            if self._last_upload is not None:
                self.explain_upload(self._last_upload)
            return
        self._refilter()
        self._redraw()

    def figure(self, title: str | None = None):
        """The current view as a matplotlib figure (for the static book, where widgets have no kernel).

        The default title is the result line: name, class, (calibrated or uncalibrated) probability,
        followed on a second line by "Uncertain: refer to a radiologist (uncertainty ... bits > referral
        level ... bits)" when the image is flagged.
        """
        if self.current is None:
            raise ValueError("Nothing is shown yet: select an image or upload one first.")
        name = self._image[0] if self._image else ""
        if not title:
            title = f"{name}: {self.current.summary(calibration=True)}"
            if self.current.refer:
                title += (f"\n{REFERRAL_FLAG} (uncertainty {self.current.uncertainty:.2f} bits > referral level "
                          f"{self.current.referral.level:.2f} bits)")
        return explanation_figure(self.current, title)
