// Package infra holds no code. Its folder is the deployment: main.bicep and
// its modules, deployed by azd (../azure.yaml) or az deployment group
// create. Bicep cannot be compiled here, so its tests check the templates,
// azure.yaml and the hooks with what can run here: the tree-sitter parse
// (../scripts/lint-bicep.js: deploy-time constants, module parameters, and
// each resource's type, API version and properties against a table of
// confirmed ones), azd's schema for the fields azure.yaml uses, the hooks
// run against a stand-in az, and the code itself: every app setting is one
// internal/config knows, every setting the functions need is set, roles,
// container and function names agree, every shared name carries the
// environment's token; and ../scripts/bicep-eval.js evaluates what the
// template deploys from given parameters (regions_test.go: each vault's
// diagnostic setting points at its region's logs account).
package infra
