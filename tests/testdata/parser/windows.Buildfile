# escape=`

FROM mcr.microsoft.com/windows/servercore:ltsc2022
COPY testfile.txt c:\
RUN dir c:\
ENV p="C:\Program Files\" q=a` b r=C:\x\y
RUN powershell -Command `
    Write-Host hi
WORKDIR C:\app\
