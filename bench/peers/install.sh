#!/usr/bin/env bash
# Installs the peers of issue 18 into their own venv, bench/peers/.venv (ignored by git), from PyPI:
# torch (PyPI's Linux wheel pulls the CUDA packages, several GB; only the CPU is used), DeepForest,
# TorchGeo, geoai-py, Raster Vision (attempted; its error is recorded), onnxruntime + onnx, and
# geodetect itself, editable from this checkout. Each peer is installed in its own step, so that one
# that fails does not stop the others; bench/peers/.venv/peers-status.txt says which installed.
set -u
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv
LOG=$VENV/install-logs
[ -x $VENV/bin/python ] || $PY -m venv $VENV
mkdir -p $LOG
PIP="$VENV/bin/python -m pip"
$PIP install --quiet --upgrade pip > $LOG/pip.log 2>&1
: > $VENV/peers-status.txt
step() {  # step NAME pip-args...
    local name=$1; shift
    if $PIP install "$@" > $LOG/$name.log 2>&1; then
        echo "$name ok" >> $VENV/peers-status.txt
    else
        echo "$name FAILED: $(grep -E 'ERROR|error:' $LOG/$name.log | tail -n 3 | tr '\n' ' ')" >> $VENV/peers-status.txt
    fi
    tail -n 1 $VENV/peers-status.txt
}
step torch torch torchvision
step geodetect -e ../.. onnxruntime onnx
step deepforest deepforest
step torchgeo torchgeo
step geoai geoai-py
step rastervision rastervision
$VENV/bin/python -m pip list 2>/dev/null | grep -iE '^(torch|torchvision|deepforest|torchgeo|geoai-py|rastervision|onnxruntime|onnx|geodetect|rasterio|numpy|lightning|pytorch-lightning|segmentation.models.pytorch|timm) ' > $VENV/peers-versions.txt
cat $VENV/peers-status.txt
