; Inno Setup 6 script for Maskloop's Windows installer.
;
; Built by .github/workflows/release.yml after `pyinstaller build.spec` has written
; dist\maskloop\ (maskloop.exe: the window; maskloop-cli.exe: the command line and --self-test):
;
;     iscc /DAppVersion=0.1.0 packaging\windows\maskloop.iss
;
; writes dist\maskloop-0.1.0-windows-x64-setup.exe. Paths below are relative to the repository
; root (SourceDir). Installs per machine, or per user without administrator rights when the user
; picks that in the first dialog; the uninstaller removes the whole program folder.

#ifndef AppVersion
  #error Pass the version: iscc /DAppVersion=X.Y.Z packaging\windows\maskloop.iss
#endif

[Setup]
AppId={{6F0C3C57-2B7A-4E0B-9C1B-6A9C5D3E8A41}
AppName=Maskloop
AppVersion={#AppVersion}
AppVerName=Maskloop {#AppVersion}
AppPublisher=Maskloop developers
SourceDir=..\..
OutputDir=dist
OutputBaseFilename=maskloop-{#AppVersion}-windows-x64-setup
SetupIconFile=build\icons\maskloop.ico
UninstallDisplayIcon={app}\maskloop.exe
UninstallDisplayName=Maskloop {#AppVersion}
DefaultDirName={autopf}\Maskloop
DefaultGroupName=Maskloop
DisableProgramGroupPage=yes
PrivilegesRequired=admin
PrivilegesRequiredOverridesAllowed=commandline dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
WizardStyle=modern
; PyTorch's DLLs are large and compress well with LZMA2; solid compression gains little more
; and would make the installer unpack everything before the first file.
Compression=lzma2/max
SolidCompression=no
LZMANumBlockThreads=4
ChangesAssociations=no

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "dist\maskloop\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\Maskloop"; Filename: "{app}\maskloop.exe"; Comment: "Label images with pixel masks and train a segmentation model"
Name: "{autodesktop}\Maskloop"; Filename: "{app}\maskloop.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\maskloop.exe"; Description: "{cm:LaunchProgram,Maskloop}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Whatever the program wrote into its own folder at run time (it normally writes nothing there).
Type: filesandordirs; Name: "{app}"
