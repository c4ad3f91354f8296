# Sourced by the gpu_*.sh scripts on the device: the carried wheels (.whl, from ../shared/tools/device-wheels.sh
# plus liger-kernel) installed into /tmp/site and put on the path with this checkout, quiet offline libraries.
# Installed once per machine (a second install into /tmp/site, e.g. by a script run beside another, would delete
# packages the first one is importing).
if [ ! -f /tmp/site/.genaptitude-installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && touch /tmp/site/.genaptitude-installed || return 1
fi
export PYTHONPATH=/tmp/site:$PWD
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
