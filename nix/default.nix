# Build ceremony-os (the builder) and ceremony-tools (the `ceremony` binary for the image) with Nix:
#   nix-build nix/
# Dependencies come from Cargo.lock; the compiler is nixpkgs' (rust-toolchain.toml pins 1.95.0
# for the reproducible image build, which runs through cargo, not through this file).
{ pkgs ? import <nixpkgs> { } }:

let
  src = pkgs.lib.cleanSourceWith {
    src = ./..;
    filter = path: type:
      let base = baseNameOf path;
      in !(base == "target" || base == "out" || base == ".git");
  };
  common = {
    version = "0.1.0";
    inherit src;
    cargoLock.lockFile = ../Cargo.lock;
    # The end-to-end tests need root, mmdebstrap, QEMU and the Debian archive.
    doCheck = false;
    meta = {
      homepage = "https://example.invalid/ceremony-os";
      license = pkgs.lib.licenses.asl20;
      platforms = [ "x86_64-linux" ];
    };
  };
in
{
  ceremony-os = pkgs.rustPlatform.buildRustPackage (common // {
    pname = "ceremony-os";
    cargoBuildFlags = [ "--package" "ceremony-os" ];
    meta = common.meta // {
      description = "Build, verify and burn a bit-for-bit reproducible live ISO for key ceremonies";
      mainProgram = "ceremony-os";
    };
  });

  ceremony-tools = pkgs.rustPlatform.buildRustPackage (common // {
    pname = "ceremony-tools";
    cargoBuildFlags = [ "--package" "ceremony-tools" ];
    meta = common.meta // {
      description = "HSM key-ceremony tool (PKCS#11) that runs inside the ceremony-os image";
      mainProgram = "ceremony";
    };
  });
}
