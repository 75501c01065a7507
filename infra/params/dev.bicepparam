// Development environment: one instance, in-memory store, no Front Door.
using '../main.bicep'

param environmentName = 'dev'
param namePrefix = 'ahg'
param dnsZoneName = 'azhexgate.example.com'
param dnsSubdomain = 'dev'
param image = 'azhexgate.azurecr.io/azhexgate-server:latest'
param skuName = 'P0v3'
param instances = 1
param operatorCidrs = [
  '203.0.113.0/24'
]
param storeUrl = 'memory:'
