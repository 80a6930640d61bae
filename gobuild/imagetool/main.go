// Command imagetool writes a container image as an OCI archive from root filesystem layers,
// with no registry and no daemon, using go-containerregistry. The archive's index names the image
// (io.containerd.image.name and org.opencontainers.image.ref.name), so `ctr images import` and
// `skopeo copy oci-archive:` take it under that name.
//
//	imagetool -name registry.k8s.io/pause:3.10.2 -out pause.tar -layer rootfs.tar \
//	    -entrypoint '["/pause"]' [-cmd JSON] [-env K=V ...] [-user U] [-workdir DIR]
package main

import (
	"archive/tar"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var layers, env list
	name := flag.String("name", "", "the image's full reference, e.g. registry.k8s.io/pause:3.10.2")
	out := flag.String("out", "", "the OCI archive to write")
	entrypoint := flag.String("entrypoint", "", "entrypoint as a JSON array")
	cmd := flag.String("cmd", "", "command as a JSON array")
	user := flag.String("user", "", "user to run as")
	workdir := flag.String("workdir", "", "working directory")
	arch := flag.String("arch", "amd64", "architecture")
	flag.Var(&layers, "layer", "a layer as an uncompressed tar (repeatable, lowest first)")
	flag.Var(&env, "env", "an environment variable K=V (repeatable)")
	flag.Parse()
	if *name == "" || *out == "" || len(layers) == 0 {
		fail(fmt.Errorf("-name, -out and at least one -layer are required"))
	}
	if err := write(*name, *out, layers, env, *entrypoint, *cmd, *user, *workdir, *arch); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "imagetool:", err)
	os.Exit(1)
}

func jsonList(text string) ([]string, error) {
	if text == "" {
		return nil, nil
	}
	var value []string
	if err := json.Unmarshal([]byte(text), &value); err != nil {
		return nil, fmt.Errorf("%q is not a JSON array of strings: %w", text, err)
	}
	return value, nil
}

func write(name, out string, layers, env []string, entrypoint, cmd, user, workdir, arch string) error {
	ep, err := jsonList(entrypoint)
	if err != nil {
		return err
	}
	command, err := jsonList(cmd)
	if err != nil {
		return err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, path := range layers {
		layer, err := tarball.LayerFromFile(path, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return fmt.Errorf("layer %s: %w", path, err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return err
		}
	}
	config, err := img.ConfigFile()
	if err != nil {
		return err
	}
	config = config.DeepCopy()
	config.OS, config.Architecture = "linux", arch
	config.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	config.Config.Entrypoint, config.Config.Cmd = ep, command
	config.Config.Env, config.Config.User, config.Config.WorkingDir = env, user, workdir
	if img, err = mutate.ConfigFile(img, config); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Dir(out), ".imagetool-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	index, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	annotations := map[string]string{
		"io.containerd.image.name":          name,
		"org.opencontainers.image.ref.name": name,
	}
	if err := index.AppendImage(img, layout.WithAnnotations(annotations)); err != nil {
		return err
	}
	return tarDirectory(dir, out)
}

// tarDirectory writes dir as a tar archive with sorted entries and no times or owners, so the
// same image gives the same bytes.
func tarDirectory(dir, out string) error {
	var paths []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && path != dir {
			paths = append(paths, path)
		}
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	partial := out + ".partial"
	file, err := os.Create(partial)
	if err != nil {
		return err
	}
	defer os.Remove(partial)
	writer := tar.NewWriter(file)
	for _, path := range paths {
		if err := addFile(writer, dir, path); err != nil {
			file.Close()
			return err
		}
	}
	if err := writer.Close(); err != nil {
		file.Close()
		return err
	}
	if err := file.Close(); err != nil {
		return err
	}
	return os.Rename(partial, out)
}

func addFile(writer *tar.Writer, dir, path string) error {
	info, err := os.Lstat(path)
	if err != nil {
		return err
	}
	header, err := tar.FileInfoHeader(info, "")
	if err != nil {
		return err
	}
	rel, _ := filepath.Rel(dir, path)
	header.Name = filepath.ToSlash(rel)
	if info.IsDir() {
		header.Name += "/"
	}
	header.ModTime, header.Uid, header.Gid, header.Uname, header.Gname = time.Unix(0, 0), 0, 0, "", ""
	header.Format = tar.FormatPAX
	if err := writer.WriteHeader(header); err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	source, err := os.Open(path)
	if err != nil {
		return err
	}
	defer source.Close()
	_, err = io.Copy(writer, source)
	return err
}
