# Every login shell repeats the air-gap check, so the operator sees a warning at the prompt.
/usr/local/sbin/ceremony-os-airgap-check || true
