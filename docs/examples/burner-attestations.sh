target/release/ceremony-os attestations check --trust witnesses --require 3 --digest <ISO sha256> *.json
target/release/ceremony-os burn out/ceremony-os-0.1.0-amd64.iso --device /dev/sr0 --expect out/SHA256SUMS \
  --trust witnesses --require 3 --attestations *.json
