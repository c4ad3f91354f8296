# Sourced by the gpu_*.sh scripts on the device: the carried wheels (.whl, from ../shared/tools/device-wheels.sh
# plus liger-kernel) installed into /tmp/site and put on the path with this checkout, quiet offline libraries.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || return 1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
