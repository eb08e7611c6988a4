package milter

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// SocketMode is the milter socket's mode: the owner (the gateway) and the
// socket's group (the MTA's) may connect; nobody else may.
const SocketMode = 0o660

// maxSocketPath is the longest path a Unix socket can be bound to
// (sun_path holds 108 bytes with the terminating NUL).
const maxSocketPath = 107

// listenUnix creates the milter socket at path, owned by the gateway's
// user, group group (the MTA's), mode 0660, with no moment when it is
// reachable with other permissions: it is bound inside a fresh 0700
// directory next to path, given its mode and group there, then renamed
// into place (rename(2) is atomic, and also replaces a stale socket left by
// a gateway that died). A path held by another process that still accepts
// connections, or that is not a socket, is refused.
//
// When group is not a group on this host (a machine without Postfix), the
// socket keeps the gateway's own group, which is logged: only the
// gateway's user and its group can then connect, never every user. A
// group that exists but cannot be given (the gateway runs unprivileged,
// is not a member, and the directory is not set-group-ID to it) is an
// error, with what to do.
func listenUnix(path, group string, log *slog.Logger) (*unixListener, error) {
	gid, gname, err := socketGroup(group, log)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if err := socketDir(dir, gid); err != nil {
		return nil, err
	}
	if err := checkStale(path, log); err != nil {
		return nil, err
	}
	tmpDir, err := os.MkdirTemp(dir, ".aupg-")
	if err != nil {
		return nil, fmt.Errorf("milter socket %s: %w", path, err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	if len(tmp) > maxSocketPath || len(path) > maxSocketPath {
		return nil, fmt.Errorf("milter socket %s: path too long for a Unix socket (the directory may be at most %d bytes)", path, maxSocketPath-len("/.aupg-0123456789/s"))
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("milter listen unix:%s: %w", path, err)
	}
	// The socket file is renamed: Close removes it itself (see Close).
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*unixListener, error) {
		_ = ln.Close()
		return nil, err
	}
	if err := os.Chmod(tmp, SocketMode); err != nil {
		return fail(fmt.Errorf("milter socket %s: %w", path, err))
	}
	if gid >= 0 {
		fi, err := os.Lstat(tmp)
		if err != nil {
			return fail(err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Gid) != gid {
			if err := os.Lchown(tmp, -1, gid); err != nil {
				return fail(fmt.Errorf("milter socket %s: cannot give it group %s: %w (run the gateway as root or as a member of %s, or create %s with group %s and mode 2750 so that the socket inherits the group)",
					path, gname, err, gname, dir, gname))
			}
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("milter socket %s: %w", path, err))
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	l := &unixListener{UnixListener: ln, path: path, fi: fi}
	log.Info("milter socket ready", "path", path, "mode", fmt.Sprintf("%04o", SocketMode), "group", gname)
	return l, nil
}

// socketGroup resolves the socket's group: (-1, own group name) when none
// is asked for or it does not exist here.
func socketGroup(group string, log *slog.Logger) (int, string, error) {
	own := strconv.Itoa(os.Getegid())
	if g, err := user.LookupGroupId(own); err == nil {
		own = g.Name
	}
	if group == "" {
		return -1, own, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		log.Warn("milter socket group does not exist on this host: the socket keeps the gateway's own group, so only the gateway's user and that group can open it (no MTA can connect until milter.socket_group names the MTA's group)",
			"socket_group", group, "group", own, "err", err.Error())
		return -1, own, nil
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, "", fmt.Errorf("milter.socket_group %s: gid %q: %w", group, g.Gid, err)
	}
	return gid, group, nil
}

// socketDir makes sure the socket's directory exists and that no other
// user can replace what is in it. A directory it creates gets mode 0750
// and the socket's group (so that the MTA can reach the socket).
func socketDir(dir string, gid int) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		hint := fmt.Sprintf("create it as root (install -d -o GATEWAY_USER -g MTA_GROUP -m 2750 %s), or set milter.listen to unix:PATH in a directory this user can write", dir)
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("milter socket directory: %w; %s", err, hint)
		}
		if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("milter socket directory: %w; %s", err, hint)
		}
		if gid >= 0 {
			if err := os.Chown(dir, -1, gid); err != nil {
				return fmt.Errorf("milter socket directory %s: %w (create it as root: install -d -o GATEWAY_USER -g MTA_GROUP -m 2750 %s)", dir, err, dir)
			}
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("milter socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("milter socket directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("milter socket directory %s is writable by every user: any of them could replace the socket; use a directory only the gateway (and root) can write", dir)
	}
	return nil
}

// checkStale refuses a path that is not a socket, or a socket another
// process still accepts on; a stale socket is left for the rename.
func checkStale(path string, log *slog.Logger) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("milter socket %s: %w", path, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("milter socket %s exists and is not a socket (%s); not replacing it", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("milter socket %s: another process is listening on it (another aupguard?)", path)
	}
	log.Info("milter socket: replacing a stale socket", "path", path, "err", err.Error())
	return nil
}

// unixListener is the milter socket. Close removes the socket file, unless
// it is no longer the one this listener created (a gateway started since
// replaced it).
type unixListener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo
}

// Close closes the listener and removes its socket file.
func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	if fi, e := os.Lstat(l.path); e == nil && os.SameFile(fi, l.fi) {
		_ = os.Remove(l.path)
	}
	return err
}

// Addr is the socket's path (not the temporary one it was bound to).
func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }
