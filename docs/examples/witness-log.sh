# The witness, after verify wrote alice.json: the entry's body (the envelope as it is, her key as
# DER, PKIX_ED25519), then the entry logged; the log's answer is published beside alice.json.
target/release/ceremony-os attestations log-request --key ~/.ssh/id_ed25519.pub alice.json > alice.rekor.json
curl --fail -sS -H 'Content-Type: application/json' --data @alice.rekor.json https://log2025-1.rekor.sigstore.dev/api/v2/log/entries > alice.tlog.json
