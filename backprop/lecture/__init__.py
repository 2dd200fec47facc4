"""The introductory lecture, reproduced: ``backprop lecture --out DIR`` builds DIR/index.html."""
from backprop.lecture.report import build_report
