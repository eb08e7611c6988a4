// Package packaging holds the Debian package of aupguard: the nfpm
// description (nfpm.yaml), the sysusers.d and tmpfiles.d entries, the
// maintainer scripts, and the test that builds the package with
// scripts/build-deb.sh and installs it with dpkg into an empty root. It
// has no Go code of its own.
package packaging
