# The witness, after verify wrote alice.json: sign the envelope for the log, then log it.
ssh-keygen -Y sign -n file -f ~/.ssh/id_ed25519 alice.json
rekor-cli upload --artifact alice.json --signature alice.json.sig --pki-format=ssh --public-key ~/.ssh/id_ed25519.pub
