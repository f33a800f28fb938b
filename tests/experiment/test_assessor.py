"""The median-stop assessor."""
from __future__ import annotations

import pytest

from torchslim.errors import ConfigError
from torchslim.experiment.assessor import MedianStopAssessor, create_assessor


def test_stops_trials_worse_than_the_median_running_average():
    a = MedianStopAssessor("maximize")
    assert not a.should_stop([0.1])  # nothing completed yet: no bar
    for curve in ([0.5, 0.6, 0.7], [0.6, 0.7, 0.8], [0.4, 0.5, 0.6]):
        a.trial_end(curve, succeeded=True)
    a.trial_end([0.0, 0.0, 0.0], succeeded=False)  # failed trials do not set the bar
    assert a.should_stop([0.2])        # median at step 1 is 0.5
    assert not a.should_stop([0.55])
    assert not a.should_stop([0.1, 0.2, 0.3, 0.9, 0.1])  # step 5: no completed trial got there


def test_minimize_and_start_step():
    a = MedianStopAssessor("minimize", start_step=2)
    a.trial_end([1.0, 0.8], succeeded=True)
    assert not a.should_stop([5.0])    # before start_step
    assert a.should_stop([5.0, 4.0])   # median average at step 2 is 0.9


def test_create_assessor_validates():
    assert create_assessor(None) is None
    assert create_assessor("Medianstop", {"start_step": 1}, "minimize").optimize_mode == "minimize"
    with pytest.raises(ConfigError, match="assessor.name is 'Bogus'; allowed: Medianstop, Curvefitting"):
        create_assessor("Bogus")
    with pytest.raises(ConfigError, match=r"assessor.classArgs has unknown argument\(s\) \['x'\]"):
        create_assessor("Medianstop", {"x": 1})
