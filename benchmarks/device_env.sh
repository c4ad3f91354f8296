# Sourced by the gpu_*.sh scripts on the device: the carried wheels (.whl, from ../shared/tools/device-wheels.sh
# plus liger-kernel) installed into /tmp/site and put on the path with this checkout, quiet offline libraries.
# Installed once per machine (a second install into /tmp/site, e.g. by a script run beside another, would delete
# packages the first one is importing).
# Byte-compiled, as a user's pip install leaves packages: the device sets PYTHONDONTWRITEBYTECODE=1 and its own
# torch/transformers/peft have no cached bytecode, so every process compiled them afresh and a lone run's start-up
# read 23.5-24.9 s on an H100 where a compiled install takes 12.1-14.5 s (session 14, the same run and machine).
if [ ! -f /tmp/site/.genaptitude-installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && touch /tmp/site/.genaptitude-installed || return 1
fi
unset PYTHONDONTWRITEBYTECODE
export PYTHONPATH=/tmp/site:$PWD
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
