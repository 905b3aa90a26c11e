# The burner, online: fetch each witness's envelope and .sig (release page, mail), and ask the log
# for its inclusion proof. Then, offline, on the machine that burns: the trust file that
# `attestations check` reads also checks each logged signature.
rekor-cli verify --artifact alice.json --signature alice.json.sig --pki-format=ssh --public-key alice.pub
ssh-keygen -Y verify -f witnesses -I alice@example.org -n file -s alice.json.sig < alice.json
