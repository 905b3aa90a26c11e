{
  description = "ceremony-os: a bit-for-bit reproducible live ISO for offline key ceremonies";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.05";

  outputs = { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      packages = import ./default.nix { inherit pkgs; };
    in
    {
      packages.${system} = packages // { default = packages.ceremony-os; };
      apps.${system}.default = {
        type = "app";
        program = "${packages.ceremony-os}/bin/ceremony-os";
      };
      devShells.${system}.default = pkgs.mkShell {
        inputsFrom = [ packages.ceremony-os ];
        packages = [ pkgs.mmdebstrap pkgs.xorriso pkgs.squashfsTools pkgs.qemu ];
      };
    };
}
