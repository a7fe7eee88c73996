// Package infra holds no code. Its folder is the deployment: main.bicep and
// its modules, deployed by azd (../azure.yaml) or az deployment group
// create. Its tests read the templates, azure.yaml and the hooks as text
// and check them against the code, since Bicep cannot be compiled here:
// every app setting is one internal/config knows, every setting the
// functions need is set, roles, container and function names agree.
package infra
