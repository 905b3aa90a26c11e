set -eu
export SOFTHSM2_CONF=$PWD/softhsm2.conf
mkdir tokens && echo "directories.tokendir = $PWD/tokens" > softhsm2.conf
softhsm2-util --init-token --free --label root-ca --so-pin 5678 --pin 123456 > /dev/null
MODULE=/usr/lib/softhsm/libsofthsm2.so

cat > step1-keygen.toml <<TOML
[hsm]
module = "$MODULE"
token_label = "root-ca"

[key]
label = "root-2026"
id = "01"
type = "ec-p384"          # or rsa-3072, rsa-4096, ec-p256

[outputs]
public_key = "root-2026.pub.pem"
TOML
echo 123456 | ceremony key generate step1-keygen.toml --pin-fd 0   # at the ceremony: typed, no echo
echo 123456 | ceremony hsm list --module $MODULE --login --token root-ca --pin-fd 0
# the private key: sensitive=true extractable=false decrypt=false unwrap=false modifiable=false copyable=false

cat > step2-root.toml <<TOML
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
echo 123456 | ceremony root step2-root.toml --pin-fd 0   # linted, signed in the HSM, verified, linted again
openssl verify -attime 1796083200 -CAfile root-2026.pem root-2026.pem   # at 2026-12-01: the root is not valid before

# An intermediate for a CSR made elsewhere, pinned by its SHA-256 in the reviewed step file; the
# profile, not the CSR, decides validity, path length, CRL distribution point and AIA.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout intermediate.key \
  -subj "/C=CH/O=Example Bank/OU=PKI/OU=Issuing/CN=Example Issuing CA 2026" -out intermediate.csr 2> /dev/null
cat > step3-intermediate.toml <<TOML
[hsm]
module = "$MODULE"
token_label = "root-ca"

[issuer]
certificate = "root-2026.pem"
key_label = "root-2026"

[csr]
path = "intermediate.csr"
sha256 = "$(sha256sum intermediate.csr | cut -d' ' -f1)"

[validity]
not_before = "2026-12-01T00:00:00Z"
not_after = "2031-12-01T00:00:00Z"

[profile]
max_validity_days = 1827
path_len = 0
crl_distribution_point = "http://crl.example/root-2026.crl"
authority_info_access = "http://ca.example/root-2026.crt"

[outputs]
certificate = "intermediate.pem"
TOML
echo 123456 | ceremony sign-csr step3-intermediate.toml --pin-fd 0
openssl verify -attime 1796083200 -CAfile root-2026.pem intermediate.pem

cat > step4-crl.toml <<TOML
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

[[crl.revoked]]
serial = "8a01"          # as openssl prints serials; 00:8A:01 is the same one
revoked_at = "2026-12-01T12:00:00Z"
reason = "superseded"

[profile]
max_span_days = 366

[outputs]
crl = "root-2026.crl.pem"
TOML
echo 123456 | ceremony crl step4-crl.toml --pin-fd 0 2>&1 | tee crl.out
openssl crl -in root-2026.crl.pem -CAfile root-2026.pem -verify -noout
openssl verify -attime 1796169600 -crl_check -CRLfile root-2026.crl.pem -CAfile root-2026.pem intermediate.pem

# The PIN as 3-of-5 shares, one per keyholder; any 3 log in to the token again, and the PIN is
# never shown: it goes to the command after `--` on its standard input.
echo 123456 | ceremony shamir split -k 3 -n 5 --secret-fd 0 > shares.txt
head -3 shares.txt | ceremony shamir combine --shares-fd 0 -- \
  ceremony hsm list --module $MODULE --login --token root-ca --pin-fd 0 > objects.txt

# The witnesses wrote down the head the CRL step printed; check the transcript against it (hex
# or the PGP words). The records after it (shamir, hsm list) are allowed with --prefix.
WITNESSED=$(sed -n 's/^  sha256 //p' crl.out | tail -1)
ceremony transcript verify --head "$WITNESSED" --prefix
