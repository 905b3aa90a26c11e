set -eu
MODULE=/usr/lib/softhsm/libsofthsm2.so   # at the real ceremony: the HSM vendor's module
mkdir -p material/steps
# The issuing CA's CSR, made on its own machine and reviewed.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout issuing.key \
  -subj "/C=CH/O=Example Bank/CN=Example Issuing CA 2026" -out material/issuing.csr 2> /dev/null

cat > material/steps/1-key.toml <<TOML
[hsm]
module = "$MODULE"
token_label = "root-ca"
[key]
label = "root-2026"
id = "01"
type = "ec-p384"
[outputs]
public_key = "root-2026.pub.pem"
TOML
cat > material/steps/2-root.toml <<TOML
[hsm]
module = "$MODULE"
token_label = "root-ca"
[key]
label = "root-2026"
[subject]
common_name = "Example Root CA 2026"
organization = "Example Bank"
country = "CH"
[validity]
not_before = "2026-12-01T00:00:00Z"
not_after = "2046-12-01T00:00:00Z"
[profile]
max_validity_days = 7306
[outputs]
certificate = "root-2026.pem"
TOML
cat > material/steps/3-issuing.toml <<TOML
[hsm]
module = "$MODULE"
token_label = "root-ca"
[issuer]
certificate = "root-2026.pem"
key_label = "root-2026"
[csr]
path = "issuing.csr"
[validity]
not_before = "2026-12-01T00:00:00Z"
not_after = "2031-12-01T00:00:00Z"
[profile]
max_validity_days = 1827
path_len = 0
[outputs]
certificate = "issuing.pem"
TOML
cat > material/steps/4-crl.toml <<TOML
[hsm]
module = "$MODULE"
token_label = "root-ca"
[issuer]
certificate = "root-2026.pem"
key_label = "root-2026"
[crl]
number = 1
this_update = "2026-12-02T00:00:00Z"
next_update = "2027-06-01T00:00:00Z"
[profile]
max_span_days = 366
[outputs]
crl = "root-2026.crl.pem"
TOML

sha() { sha256sum "material/$1" | cut -d' ' -f1; }
cat > material/plan.toml <<TOML
[plan]
title = "Example Bank root ceremony 2026"

[[step]]
id = "root-key"
run = "key generate"
say = "Generate the root key in the HSM."
file = "steps/1-key.toml"
sha256 = "$(sha steps/1-key.toml)"

[[step]]
id = "root-certificate"
run = "root"
say = "Issue the self-signed root certificate."
file = "steps/2-root.toml"
sha256 = "$(sha steps/2-root.toml)"

[[step]]
id = "witness-root"
run = "checkpoint"
say = "Witnesses: compare the root certificate's digest with the one on your script."
show = ["root-2026.pem"]

[[step]]
id = "issuing-ca"
run = "sign-csr"
say = "Certify the issuing CA from its CSR."
file = "steps/3-issuing.toml"
sha256 = "$(sha steps/3-issuing.toml)"
inputs = { "issuing.csr" = "$(sha issuing.csr)" }

[[step]]
id = "first-crl"
run = "crl"
file = "steps/4-crl.toml"
sha256 = "$(sha steps/4-crl.toml)"

[[step]]
id = "pin-shares"
run = "shamir split"
say = "Split the token PIN 2 of 3; each keyholder takes one line."
token = "root-ca"
threshold = 2
shares = 3
TOML
