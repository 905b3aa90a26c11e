set -eu
ceremony plan check material/plan.toml   # the steps, and the plan's digest for the script
mkdir rehearsal && cd rehearsal
ceremony plan run --dry-run ../material/plan.toml --pin-fd 3 --confirm-fd 4 \
  3<<< 123456 4< <(printf 'yes\nyes\n') > shares.txt 2> ../rehearsal.log   # the plan's digest, the checkpoint
ceremony export --image ../rehearsal.img   # on the laptop: --device /dev/sdX (the stick)
cd ..
# On another machine: copy the stick off, check the sums, the chain, the CRL and the transcript
# against the last head shown on the console (the witnesses wrote it down).
mkdir checked && mcopy -s -n -i rehearsal.img '::*' checked/
(cd checked && sha256sum -c SHA256SUMS)
openssl verify -attime 1796083200 -CAfile checked/root-2026.pem checked/issuing.pem
openssl verify -attime 1796169600 -crl_check -CRLfile checked/root-2026.crl.pem \
  -CAfile checked/root-2026.pem checked/issuing.pem
HEAD=$(sed -n 's/^  sha256 //p' rehearsal.log | tail -1)
ceremony transcript verify --transcript checked/ceremony-transcript.jsonl --head "$HEAD"
