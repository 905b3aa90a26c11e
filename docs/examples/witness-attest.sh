target/release/ceremony-os verify image/ceremony.toml --lockfile release/ceremony.lock \
  --expect release/ceremony-os.manifest.json --attest alice.json --signing-key ~/.ssh/id_ed25519 --verifier alice@example.org \
  --verified-at 2026-11-22T10:00:00Z --commit "$(git rev-parse HEAD)"
