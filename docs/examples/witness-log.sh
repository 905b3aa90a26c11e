# The witness, after verify wrote alice.json: the entry's body (SHA-512 of the envelope's PAE, an
# Ed25519ph signature, her key as DER), then the entry logged; the answer goes beside alice.json.
target/release/ceremony-os attestations log-request --signing-key ~/.ssh/id_ed25519 alice.json > alice.rekor.json
curl --fail -sS -H 'Content-Type: application/json' --data @alice.rekor.json https://log2025-1.rekor.sigstore.dev/api/v2/log/entries > alice.tlog.json
