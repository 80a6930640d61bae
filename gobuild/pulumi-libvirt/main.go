// Command pulumi-resource-libvirt is kubestrata's Pulumi resource plugin for libvirt:
// terraform-provider-libvirt (the version go.mod pins) run behind pulumi-terraform-bridge, with
// a resource mapping of our own that gives the type tokens and property names the pulumi_libvirt
// 0.5.4 SDK uses. It is not pulumi-libvirt's release binary, and says so: its version is the
// Terraform provider's with build metadata, e.g. 0.8.3+terraform-provider-libvirt.kubestrata.
//
// Run by the Pulumi engine it serves the provider. Its Pulumi schema is generated at build time
// from the same mapping, by this program:
//
//	pulumi-resource-libvirt -write-schema FILE
//
// and read at run time from SCHEMA_FILE beside the executable (GetSchema, and the bridge's type
// checking of inputs); without that file the plugin still works, with an empty schema.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/dmacvicar/terraform-provider-libvirt/libvirt"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfgen"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/diag/colors"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
)

const (
	pkg         = "libvirt"
	upstream    = "github.com/dmacvicar/terraform-provider-libvirt"
	schemaFile  = "pulumi-resource-libvirt.schema.json"
	buildSuffix = "+terraform-provider-libvirt.kubestrata"
)

// resources and dataSources: Terraform name -> the name pulumi_libvirt 0.5.4 gives it, all in the
// module "index" (token libvirt:index/<camelName>:<Name>, as the SDK's classes register).
var resources = map[string]string{
	"libvirt_cloudinit_disk": "CloudInitDisk",
	"libvirt_combustion":     "Combustion",
	"libvirt_domain":         "Domain",
	"libvirt_ignition":       "Ignition",
	"libvirt_network":        "Network",
	"libvirt_pool":           "Pool",
	"libvirt_volume":         "Volume",
}

var dataSources = map[string]string{
	"libvirt_network_dns_host_template":        "getNetworkDnsHostTemplate",
	"libvirt_network_dns_srv_template":         "getNetworkDnsSrvTemplate",
	"libvirt_network_dnsmasq_options_template": "getNetworkDnsmasqOptionsTemplate",
	"libvirt_node_device_info":                 "getNodeDeviceInfo",
	"libvirt_node_devices":                     "getNodeDevices",
	"libvirt_node_info":                        "getNodeInfo",
}

// member is the token of name in module index: libvirt:index/<name, first letter lower>:<name>.
func member(name string) string {
	return fmt.Sprintf("%s:index/%s%s:%s", pkg, strings.ToLower(name[:1]), name[1:], name)
}

// version is the Terraform provider's version this program was linked with, plus build metadata
// saying what it is.
func version() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == upstream {
				return strings.TrimPrefix(dep.Version, "v") + buildSuffix
			}
		}
	}
	return "0.0.0" + buildSuffix
}

func providerInfo() tfbridge.ProviderInfo {
	info := tfbridge.ProviderInfo{
		P:           shimv2.NewProvider(libvirt.Provider()),
		Name:        pkg,
		Version:     version(),
		Description: "libvirt resources: terraform-provider-libvirt bridged to Pulumi, built by kubestrata",
		License:     "Apache-2.0",
		Repository:  "https://" + upstream,
		GitHubOrg:   "dmacvicar",
		Config: map[string]*tfbridge.SchemaInfo{
			"uri": {Default: &tfbridge.DefaultInfo{EnvVars: []string{"LIBVIRT_DEFAULT_URI"}}},
		},
		Resources:   map[string]*tfbridge.ResourceInfo{},
		DataSources: map[string]*tfbridge.DataSourceInfo{},
	}
	for tf, name := range resources {
		info.Resources[tf] = &tfbridge.ResourceInfo{Tok: tokens.Type(member(name))}
	}
	for tf, name := range dataSources {
		info.DataSources[tf] = &tfbridge.DataSourceInfo{Tok: tokens.ModuleMember(member(name))}
	}
	// A resource's `name` may be left out: Pulumi then makes one from the resource's name.
	info.SetAutonaming(255, "-")
	return info
}

func writeSchema(info tfbridge.ProviderInfo, path string) error {
	sink := diag.DefaultSink(os.Stderr, os.Stderr, diag.FormatOptions{Color: colors.Never})
	result, err := tfgen.GenerateSchemaWithOptions(tfgen.GenerateSchemaOptions{
		ProviderInfo: info, DiagnosticsSink: sink, XInMemoryDocs: true})
	if err != nil {
		return err
	}
	text, err := json.MarshalIndent(result.PackageSpec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(text, '\n'), 0o644)
}

// schema is the generated schema beside the executable, or nil.
func schema() []byte {
	executable, err := os.Executable()
	if err != nil {
		return nil
	}
	text, err := os.ReadFile(filepath.Join(filepath.Dir(executable), schemaFile))
	if err != nil {
		return nil
	}
	return text
}

func main() {
	info := providerInfo()
	if len(os.Args) == 3 && os.Args[1] == "-write-schema" {
		if err := writeSchema(info, os.Args[2]); err != nil {
			fmt.Fprintf(os.Stderr, "pulumi-resource-libvirt: writing the schema: %v\n", err)
			os.Exit(1)
		}
		return
	}
	tfbridge.Main(pkg, info.Version, info, schema())
}
