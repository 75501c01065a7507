// Log Analytics workspace (App Service console and HTTP logs) and a workspace-based Application
// Insights component (its connection string is handed to the app).

@description('Name prefix of the resources.')
param prefix string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Days of log retention in the workspace.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${prefix}-logs'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${prefix}-insights'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

@description('Resource id of the Log Analytics workspace.')
output workspaceId string = workspace.id

@description('Resource id of the Application Insights component.')
output insightsId string = insights.id

@description('Connection string of the Application Insights component (not a secret: local auth is off).')
output insightsConnectionString string = insights.properties.ConnectionString
